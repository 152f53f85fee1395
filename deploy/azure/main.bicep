// renderburst's own VM in Azure, with a system-assigned managed identity and only the rights
// the daemon uses (no secret to store or rotate).
//
//   az deployment sub create --location westeurope --template-file deploy/azure/main.bicep \
//     --parameters renderResourceGroupName=render-burst \
//                  renderSubnetId=/subscriptions/.../subnets/render \
//                  daemonSubnetId=/subscriptions/.../subnets/services \
//                  sshPublicKey="$(cat ~/.ssh/id_ed25519.pub)"
//
// Deploying needs rights to create role definitions and assignments (Owner or User Access
// Administrator). What the daemon gets, and nothing more:
//   - "renderburst operator" on the render resource group: create, start, deallocate and
//     delete VMs; NICs; OS disks; Batch pools; poll operations. Nothing elsewhere, no role
//     assignments, no reads of secrets.
//   - "renderburst subnet joiner" on the render subnet itself (not its resource group, not its
//     virtual network's other subnets): read it and join NICs to it
//     (Microsoft.Network/virtualNetworks/subnets/join/action), which is all a NIC in another
//     resource group needs of a subnet.
//   - "renderburst observer" on the subscription: Microsoft.Compute/virtualMachines/read only.
//     renderburst reads every VM's power state in one paged call, the subscription-wide list
//     with statusOnly=true, and keeps the rows of its own resource group. The resource-group
//     list cannot carry power states: its $expand=instanceView is accepted only with a
//     $filter, and the only $filter the Compute REST specification allows is
//     'virtualMachineScaleSet/id' eq ..., which standalone VMs never match (Virtual Machines -
//     List, api-version 2025-04-01). Reading each VM's instance view instead would cost one
//     read per VM per activation, which the read bucket cannot afford at hundreds of nodes.
// The render resource group must exist (renderburst does not create it with this identity).

targetScope = 'subscription'

@description('Region of the daemon VM (and its resource group).')
param location string = deployment().location

@description('Resource group for the daemon VM; created if missing.')
param daemonResourceGroupName string = 'renderburst-daemon'

@description('Existing resource group where renderburst creates render nodes.')
param renderResourceGroupName string

@description('Subnet render nodes join (its resource group gets subnets/join for the daemon).')
param renderSubnetId string

@description('Subnet for the daemon VM itself: one the render manager can reach. No public IP is created.')
param daemonSubnetId string

@description('Size of the daemon VM: 2 vCPUs are plenty for thousands of nodes.')
param vmSize string = 'Standard_B2s'

param adminUsername string = 'renderburst'

@description('SSH public key for adminUsername (password login is disabled).')
param sshPublicKey string

@description('Optional HTTPS URL of a renderburst Linux x86_64 binary; empty: copy it to /usr/local/bin yourself.')
param binaryUrl string = ''

var renderSubnetResourceGroup = split(renderSubnetId, '/')[4]

resource daemonRg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: daemonResourceGroupName
  location: location
}

resource operatorRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'renderburst-operator')
  properties: {
    roleName: 'renderburst operator (${subscription().subscriptionId})'
    description: 'What the renderburst daemon does to render nodes in its resource group.'
    type: 'CustomRole'
    assignableScopes: [subscription().id]
    permissions: [
      {
        actions: [
          'Microsoft.Resources/subscriptions/resourceGroups/read'
          'Microsoft.Compute/virtualMachines/read'
          'Microsoft.Compute/virtualMachines/write'
          'Microsoft.Compute/virtualMachines/delete'
          'Microsoft.Compute/virtualMachines/start/action'
          'Microsoft.Compute/virtualMachines/deallocate/action'
          'Microsoft.Compute/virtualMachines/powerOff/action'
          'Microsoft.Compute/virtualMachines/instanceView/read'
          'Microsoft.Compute/disks/read'
          'Microsoft.Compute/disks/write'
          'Microsoft.Compute/disks/delete'
          'Microsoft.Compute/locations/operations/read'
          'Microsoft.Compute/images/read'
          'Microsoft.Compute/galleries/images/versions/read'
          'Microsoft.Network/networkInterfaces/read'
          'Microsoft.Network/networkInterfaces/write'
          'Microsoft.Network/networkInterfaces/delete'
          'Microsoft.Network/networkInterfaces/join/action'
          'Microsoft.Network/networkSecurityGroups/read'
          'Microsoft.Network/networkSecurityGroups/join/action'
          'Microsoft.Network/locations/operations/read'
          'Microsoft.Batch/batchAccounts/read'
          'Microsoft.Batch/batchAccounts/pools/read'
          'Microsoft.Batch/batchAccounts/pools/write'
          'Microsoft.Batch/batchAccounts/pools/delete'
          'Microsoft.Batch/locations/operationresults/read'
        ]
        notActions: []
      }
    ]
  }
}

resource subnetJoinRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'renderburst-subnet-joiner')
  properties: {
    roleName: 'renderburst subnet joiner (${subscription().subscriptionId})'
    description: 'Join render nodes NICs to one subnet: read it and join it, nothing else.'
    type: 'CustomRole'
    assignableScopes: [subscription().id]
    permissions: [
      {
        actions: [
          'Microsoft.Network/virtualNetworks/read'
          'Microsoft.Network/virtualNetworks/subnets/read'
          'Microsoft.Network/virtualNetworks/subnets/join/action'
        ]
        notActions: []
      }
    ]
  }
}

resource observerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'renderburst-observer')
  properties: {
    roleName: 'renderburst observer (${subscription().subscriptionId})'
    description: 'Power states of VMs in one paged call (statusOnly list is subscription-wide).'
    type: 'CustomRole'
    assignableScopes: [subscription().id]
    permissions: [
      {
        actions: ['Microsoft.Compute/virtualMachines/read']
        notActions: []
      }
    ]
  }
}

module daemon 'daemon-vm.bicep' = {
  name: 'renderburst-daemon-vm'
  scope: daemonRg
  params: {
    location: location
    vmSize: vmSize
    subnetId: daemonSubnetId
    adminUsername: adminUsername
    sshPublicKey: sshPublicKey
    binaryUrl: binaryUrl
    subscriptionId: subscription().subscriptionId
    renderResourceGroupName: renderResourceGroupName
    renderLocation: location
    renderSubnetId: renderSubnetId
  }
}

resource observe 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, 'renderburst-observer', daemonResourceGroupName)
  properties: {
    roleDefinitionId: observerRole.id
    principalId: daemon.outputs.principalId
    principalType: 'ServicePrincipal'
  }
}

module operateRender 'role-assignment.bicep' = {
  name: 'renderburst-operator-render'
  scope: resourceGroup(renderResourceGroupName)
  params: {
    roleDefinitionId: operatorRole.id
    principalId: daemon.outputs.principalId
  }
}

// The subnet's own scope, wherever its resource group is: the operator role is never given
// on the network's resource group.
module joinSubnet 'subnet-join.bicep' = {
  name: 'renderburst-subnet-join'
  scope: resourceGroup(renderSubnetResourceGroup)
  params: {
    virtualNetworkName: split(renderSubnetId, '/')[8]
    subnetName: split(renderSubnetId, '/')[10]
    roleDefinitionId: subnetJoinRole.id
    principalId: daemon.outputs.principalId
  }
}

output daemonPrivateIp string = daemon.outputs.privateIp
output principalId string = daemon.outputs.principalId
