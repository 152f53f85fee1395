// The daemon's VM: Ubuntu 24.04, no public IP, system-assigned managed identity, and a
// cloud-init that writes the config (credential = managed_identity) and the systemd unit.

param location string
param vmSize string
param subnetId string
param adminUsername string
@secure()
param sshPublicKey string
param binaryUrl string
param subscriptionId string
param renderResourceGroupName string
param renderLocation string
param renderSubnetId string

var name = 'renderburst'

var config = '''
[server]
listen = "0.0.0.0:7878"   # render managers and booting nodes call in; every route but
                          # /healthz and /readyz needs a token from off the machine
# Plain HTTP, as an explicit private-network choice: this VM has no public IP and the API is
# reachable only inside the VNet (and what is peered or routed to it). API tokens cross that
# network in clear; to serve HTTPS instead, put a certificate the render nodes trust on the
# VM and replace this line with tls_cert_file / tls_key_file (README "Expose the API").
insecure_http = true

[store]
url = "sqlite:///var/lib/renderburst/renderburst.db"

[azure]
subscription_id = "@SUBSCRIPTION@"
resource_group = "@RENDER_RG@"
location = "@LOCATION@"
credential = "managed_identity"
subnet_id = "@SUBNET@"
ensure_network = false
admin_username = "render"
'''

var renderedConfig = replace(replace(replace(replace(config, '@SUBSCRIPTION@', subscriptionId), '@RENDER_RG@', renderResourceGroupName), '@LOCATION@', renderLocation), '@SUBNET@', renderSubnetId)

var fetchBinary = empty(binaryUrl) ? 'true' : 'curl -fsSL -o /usr/local/bin/renderburst "${binaryUrl}" && chmod 0755 /usr/local/bin/renderburst'

var cloudInit = '#cloud-config\n${string({
  write_files: [
    {
      path: '/etc/renderburst/renderburst.toml'
      permissions: '0644' // read by the service's dynamic user; holds no secret
      content: renderedConfig
    }
    {
      path: '/etc/systemd/system/renderburst.service'
      permissions: '0644'
      content: loadTextContent('../systemd/renderburst.service')
    }
  ]
  runcmd: [
    ['sh', '-c', fetchBinary]
    ['systemctl', 'daemon-reload']
    // Enabled either way; it starts once /usr/local/bin/renderburst exists.
    ['sh', '-c', 'systemctl enable renderburst && if [ -x /usr/local/bin/renderburst ]; then systemctl start renderburst; fi']
  ]
})}'

resource nic 'Microsoft.Network/networkInterfaces@2024-05-01' = {
  name: '${name}-nic'
  location: location
  properties: {
    ipConfigurations: [
      {
        name: 'ipconfig1'
        properties: {
          subnet: { id: subnetId }
          privateIPAllocationMethod: 'Dynamic'
        }
      }
    ]
  }
}

resource vm 'Microsoft.Compute/virtualMachines@2024-07-01' = {
  name: name
  location: location
  identity: { type: 'SystemAssigned' }
  properties: {
    hardwareProfile: { vmSize: vmSize }
    storageProfile: {
      imageReference: {
        publisher: 'Canonical'
        offer: 'ubuntu-24_04-lts'
        sku: 'server'
        version: 'latest'
      }
      osDisk: {
        createOption: 'FromImage'
        managedDisk: { storageAccountType: 'Premium_LRS' }
        deleteOption: 'Delete'
      }
    }
    osProfile: {
      computerName: name
      adminUsername: adminUsername
      customData: base64(cloudInit)
      linuxConfiguration: {
        disablePasswordAuthentication: true
        ssh: {
          publicKeys: [
            {
              path: '/home/${adminUsername}/.ssh/authorized_keys'
              keyData: sshPublicKey
            }
          ]
        }
      }
    }
    networkProfile: {
      networkInterfaces: [{ id: nic.id, properties: { deleteOption: 'Delete' } }]
    }
  }
}

output principalId string = vm.identity.principalId
output privateIp string = nic.properties.ipConfigurations[0].properties.privateIPAddress
