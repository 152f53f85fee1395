#!/usr/bin/env bash
# Compatibility check: the Azure CLI (unchanged) against the renderburst simulator.
#
# Usage: cli_check.sh [URL] [CA]       (or env SIM_URL, SIM_CA)
# Env:   AZ (default: <repo>/.venv-compat-cli/bin/az), AZURE_TENANT_ID, AZURE_CLIENT_ID,
#        AZURE_CLIENT_SECRET, AZURE_SUBSCRIPTION_ID, SIM_LOCATION,
#        COMPAT_XFAIL="step name,step name" (those steps' failures print XFAIL and are not counted,
#        e.g. COMPAT_XFAIL="vm create (az vm create)" while the simulator has no template deployments)
#
# The CLI gets a custom cloud registered from the simulator's
# `GET /metadata/endpoints?api-version=2022-09-01`, MSAL instance discovery off
# (core.instance_discovery=false), REQUESTS_CA_BUNDLE=CA and an isolated AZURE_CONFIG_DIR.
# Every az call runs with --debug; its log is kept per step under $LOGDIR.
#
# Output: one line per step, `PASS step` / `FAIL step: reason`; then the distinct endpoints the
# CLI called (`#   METHOD path?query [statuses]`); last line `N passed, N failed`.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
URL=${1:-${SIM_URL:-}}
CA=${2:-${SIM_CA:-}}
if [[ -z "$URL" || -z "$CA" ]]; then
    echo "usage: $0 URL CA  (or SIM_URL / SIM_CA)" >&2
    exit 2
fi
URL=${URL%/}
AZ=${AZ:-$ROOT/.venv-compat-cli/bin/az}
PY=${PY:-$ROOT/.venv-compat-cli/bin/python}
[[ -x "$PY" ]] || PY=python3
TENANT=${AZURE_TENANT_ID:-11111111-1111-1111-1111-111111111111}
CLIENT=${AZURE_CLIENT_ID:-22222222-2222-2222-2222-222222222222}
SECRET=${AZURE_CLIENT_SECRET:-sim-secret}
SUB=${AZURE_SUBSCRIPTION_ID:-33333333-3333-3333-3333-333333333333}
LOC=${SIM_LOCATION:-eastus}

WORK=$(mktemp -d /tmp/compat-cli.XXXXXX)
LOGDIR=$WORK/logs
mkdir -p "$LOGDIR"
export AZURE_CONFIG_DIR=$WORK/azconfig
export REQUESTS_CA_BUNDLE=$CA
export AZURE_CORE_COLLECT_TELEMETRY=false
export AZURE_CORE_SURVEY_MESSAGE=false
export AZURE_CORE_NO_COLOR=true
export AZURE_CORE_LOGIN_EXPERIENCE_V2=off
export AZURE_EXTENSION_USE_DYNAMIC_INSTALL=no
unset AZURE_CLOUD_NAME AZURE_DEFAULTS_GROUP AZURE_DEFAULTS_LOCATION

SUFFIX=$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')
RG=compat-cli-$SUFFIX
VNET=vnet-$SUFFIX
SUBNET=default
NSG=nsg-$SUFFIX
VM=vmcli-$SUFFIX
VM2=vmrest-$SUFFIX
ACCT=compatcli$SUFFIX
POOL=pool-$SUFFIX
CLOUD=RenderburstSim
SSH_KEY="ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDluT3ioAbAf285WDmTHiT15j1u233Y1xNpqvMbwzLo9Yqdfx4yTfH7zAc6wEhrdQh41OABXs9HiF13Hwnm44fhViZ3VxyxDeKvjdf6n/bAc6Hq22RIFcYIw+oRBLMgOEQwJAIRLhlvnuXd/j6pWayepL2y2uRERydqMC9AJWFyV5vLgy0bNSkOFD6U3PAv0/MVQDzH3CMEMPs67Gf8SSFpDol6TykVVv975uOSyM6fdeVM6zr56tFJvpkwyfWjD5pTY8d1GpfBaPP3H5U6hJg4y8yV9pyASnVN1+Q8NA6848dmDusxJsbZ4+ZWiOtiOgt/Tv3+7H8iw2FJMtRNdlm3 compat@renderburst"

PASSED=0
FAILED=0
XFAILED=0
declare -A OK=()
CUR_LOG=/dev/null
STEP_N=0

# az_ ARGS...: run az with --debug, its stderr appended to the current step's log.
az_() {
    echo "+ az $*" >>"$CUR_LOG"
    "$AZ" "$@" --debug 2>>"$CUR_LOG"
}

# Summarise why the current step failed: the az ERROR line and the last non-2xx requests.
log_reason() {
    local err http
    err=$(grep -E '^(ERROR|Error|.*Exception):? ' "$CUR_LOG" | grep -v '^DEBUG' | tail -1 | cut -c1-400)
    http=$(grep -oE '"[A-Z]+ [^ ]+ HTTP/1\.1" [0-9]{3}' "$CUR_LOG" | awk '$NF !~ /^2/' | tail -2 \
        | sed -E 's/"([A-Z]+) ([^ ]+) HTTP\/1\.1" ([0-9]+)/\1 \2 -> \3/' | paste -sd ';' -)
    local last
    last=$(grep -oE '"[A-Z]+ [^ ]+ HTTP/1\.1" [0-9]{3}' "$CUR_LOG" | tail -1 \
        | sed -E 's/"([A-Z]+) ([^ ]+) HTTP\/1\.1" ([0-9]+)/\1 \2 -> \3/')
    echo "${err:-no az error line}${http:+ | non-2xx: $http}${last:+ | last request: $last}"
}

# step NAME FUNCTION [NEEDS...]
step() {
    local name=$1 fn=$2
    shift 2
    local dep
    for dep in "$@"; do
        if [[ -z "${OK[$dep]:-}" ]]; then
            echo "FAIL $name: not run, prerequisite '$dep' failed"
            FAILED=$((FAILED + 1))
            return
        fi
    done
    STEP_N=$((STEP_N + 1))
    CUR_LOG=$LOGDIR/$(printf '%02d' "$STEP_N")-$(echo "$name" | tr -c 'A-Za-z0-9\n' '_' | cut -c1-40).log
    : >"$CUR_LOG"
        local t0=$SECONDS info
    if info=$($fn); then
        echo "PASS $name${info:+ ($info)} [$((SECONDS - t0))s]"
        OK[$name]=1
        PASSED=$((PASSED + 1))
    else
        # $fn ran in a subshell: its reason is what it printed (see fail()).
        if [[ ",${COMPAT_XFAIL:-}," == *",$name,"* ]]; then
            echo "XFAIL $name: ${info:+$info | }$(log_reason) [log $CUR_LOG]"
            XFAILED=$((XFAILED + 1))
        else
            echo "FAIL $name: ${info:+$info | }$(log_reason) [log $CUR_LOG]"
            FAILED=$((FAILED + 1))
        fi
    fi
}

# Inside a step function (which runs in a subshell): print the reason on stdout and leave it.
fail() { echo "$*"; exit 1; }

power_state() { # VM -> PowerState/... via get-instance-view
    az_ vm get-instance-view -g "$RG" -n "$1" \
        --query "instanceView.statuses[?starts_with(code, 'PowerState/')].code | [0]" -o tsv
}

wait_power() { # VM WANT TIMEOUT
    local vm=$1 want=$2 deadline=$((SECONDS + $3)) ps seen=""
    while :; do
        ps=$(power_state "$vm") || return 1
        [[ "$seen" == *"$ps" ]] || seen="${seen:+$seen -> }$ps"
        [[ "$ps" == "$want" ]] && { echo "$seen"; return 0; }
        ((SECONDS > deadline)) && { echo "power state '$ps', want '$want' (seen $seen)"; return 1; }
        sleep 1
    done
}

# ------------------------------------------------------------------------------------------
# register_cloud MODE: MODE=discovery (only --endpoint-resource-manager: the CLI reads
# GET {ARM}/metadata/endpoints?api-version=2022-09-01) or explicit (--skip-endpoint-discovery and a
# cloud config naming every endpoint). Runs against the current AZURE_CONFIG_DIR.
register_cloud() {
    if [[ $1 == discovery ]]; then
        az_ cloud register -n "$CLOUD" --endpoint-resource-manager "$URL" >/dev/null || return 1
    else
        cat >"$WORK/cloud.json" <<EOF
{"endpoints": {"resourceManager": "$URL/", "activeDirectory": "$URL",
  "activeDirectoryResourceId": "https://management.core.windows.net/",
  "management": "https://management.core.windows.net/",
  "activeDirectoryGraphResourceId": "https://graph.windows.net/",
  "microsoftGraphResourceId": "https://graph.microsoft.com/",
  "batchResourceId": "https://batch.core.windows.net/"}}
EOF
        az_ cloud register -n "$CLOUD" --skip-endpoint-discovery --cloud-config @"$WORK/cloud.json" >/dev/null \
            || return 1
    fi
    az_ cloud set -n "$CLOUD" >/dev/null || return 1
    az_ config set core.instance_discovery=false >/dev/null 2>&1 || return 1
}

show_cloud() {
    local rm ad aud
    rm=$(az_ cloud show -n "$CLOUD" --query endpoints.resourceManager -o tsv)
    ad=$(az_ cloud show -n "$CLOUD" --query endpoints.activeDirectory -o tsv)
    aud=$(az_ cloud show -n "$CLOUD" --query endpoints.activeDirectoryResourceId -o tsv)
    [[ "${rm%/}" == "$URL" ]] || fail "resourceManager '$rm' != $URL"
    [[ "${ad%/}" == "$URL" ]] || fail "activeDirectory (loginEndpoint) '$ad' != $URL"
    echo "resourceManager=$rm activeDirectory=$ad audience=$aud"
}

CLOUD_MODE=discovery
s_cloud_register() {
    register_cloud discovery || fail "az cloud register --endpoint-resource-manager (metadata discovery)"
    show_cloud
}

s_cloud_register_explicit() {
    az_ cloud unregister -n "$CLOUD" >/dev/null 2>&1
    register_cloud explicit || fail "az cloud register --skip-endpoint-discovery --cloud-config"
    show_cloud
}

s_login() {
    az_ login --service-principal -u "$CLIENT" -p "$SECRET" --tenant "$TENANT" -o none || fail "az login"
    local sub
    sub=$(az_ account show --query id -o tsv) || fail "az account show"
    [[ "$sub" == "$SUB" ]] || fail "default subscription '$sub' != $SUB"
    az_ account get-access-token --query expiresOn -o tsv >/dev/null || fail "az account get-access-token"
    echo "subscription $sub"
}

s_bad_secret() {
    # A fresh config dir: MSAL would otherwise answer from its token cache without asking the
    # token endpoint (acquire_token_for_client looks in the cache first).
    local out dir=$WORK/azconfig-bad
    mkdir -p "$dir"
    AZURE_CONFIG_DIR=$dir register_cloud "$CLOUD_MODE" || fail "cloud register ($CLOUD_MODE) in a fresh config dir"
    if out=$(AZURE_CONFIG_DIR=$dir "$AZ" login --service-principal -u "$CLIENT" -p wrong-secret \
        --tenant "$TENANT" -o none --debug 2>&1); then
        echo "$out" >>"$CUR_LOG"
        fail "login with a wrong secret succeeded"
    fi
    echo "$out" >>"$CUR_LOG"
    grep -q AADSTS7000215 <<<"$out" || fail "no AADSTS7000215 in the error"
}

s_group() {
    az_ group create -n "$RG" -l "$LOC" --tags purpose=compat -o none || fail "az group create"
    local st
    st=$(az_ group show -n "$RG" --query properties.provisioningState -o tsv) || fail "az group show"
    [[ "$st" == Succeeded ]] || fail "group provisioningState '$st'"
    [[ $(az_ group exists -n "$RG") == true ]] || fail "az group exists != true"
}

s_vnet() {
    az_ network vnet create -g "$RG" -n "$VNET" -l "$LOC" --address-prefixes 10.43.0.0/16 \
        --subnet-name "$SUBNET" --subnet-prefixes 10.43.1.0/24 -o none || fail "az network vnet create"
    local id
    id=$(az_ network vnet subnet show -g "$RG" --vnet-name "$VNET" -n "$SUBNET" --query id -o tsv) \
        || fail "az network vnet subnet show"
    [[ -n "$id" ]] || fail "empty subnet id"
}

s_nsg() {
    az_ network nsg create -g "$RG" -n "$NSG" -l "$LOC" -o none || fail "az network nsg create"
}

s_vm_create() {
    # az vm create always deploys an ARM template (Microsoft.Resources/deployments) that holds a
    # separate NIC resource; --nic-delete-option / --os-disk-delete-option give the cascade.
    az_ vm create -g "$RG" -n "$VM" -l "$LOC" --image Canonical:ubuntu-24_04-lts:server:latest \
        --size Standard_D2s_v3 --vnet-name "$VNET" --subnet "$SUBNET" --nsg "$NSG" \
        --public-ip-address "" --admin-username azureuser --ssh-key-values "$SSH_KEY" \
        --nic-delete-option Delete --os-disk-delete-option Delete --storage-sku Standard_LRS \
        -o none || fail "az vm create"
    local st
    st=$(az_ vm show -g "$RG" -n "$VM" --query provisioningState -o tsv) || fail "az vm show"
    [[ "$st" == Succeeded ]] || fail "provisioningState '$st'"
}

# Fallback VM create without the template engine: the same inline-NIC body as sdk_check.py,
# through the generic `az resource create` (which polls the LRO).
s_vm_create_resource() {
    local nsg_id subnet_id body=$WORK/vm.json
    nsg_id=$(az_ network nsg show -g "$RG" -n "$NSG" --query id -o tsv) || fail "nsg show"
    subnet_id=$(az_ network vnet subnet show -g "$RG" --vnet-name "$VNET" -n "$SUBNET" --query id -o tsv) \
        || fail "subnet show"
    cat >"$body" <<EOF
{
  "location": "$LOC",
  "tags": {"renderburst-pool": "compat", "renderburst-owner": "compat"},
  "properties": {
    "hardwareProfile": {"vmSize": "Standard_D2s_v3"},
    "storageProfile": {
      "imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
      "osDisk": {"name": "$VM2-osdisk", "createOption": "FromImage", "deleteOption": "Delete",
                 "managedDisk": {"storageAccountType": "Standard_LRS"}}
    },
    "osProfile": {"computerName": "$VM2", "adminUsername": "azureuser",
      "linuxConfiguration": {"disablePasswordAuthentication": true,
        "ssh": {"publicKeys": [{"path": "/home/azureuser/.ssh/authorized_keys", "keyData": "$SSH_KEY"}]}}},
    "networkProfile": {
      "networkApiVersion": "2020-11-01",
      "networkInterfaceConfigurations": [{"name": "$VM2-nic", "properties": {
        "primary": true, "deleteOption": "Delete", "networkSecurityGroup": {"id": "$nsg_id"},
        "ipConfigurations": [{"name": "ipconfig1", "properties": {"primary": true, "subnet": {"id": "$subnet_id"}}}]}}]
    }
  }
}
EOF
    # --id, not -g/-n/--resource-type: the latter makes the CLI send ".../Microsoft.Compute//virtualMachines/...".
    az_ resource create --id "/subscriptions/$SUB/resourceGroups/$RG/providers/Microsoft.Compute/virtualMachines/$VM2" \
        --api-version 2025-04-01 --is-full-object --properties @"$body" -o none || fail "az resource create"
    local st
    st=$(az_ vm show -g "$RG" -n "$VM2" --query provisioningState -o tsv) || fail "az vm show"
    [[ "$st" == Succeeded ]] || fail "provisioningState '$st'"
}

# The lifecycle runs on whichever VM was created (az vm create first, else the fallback).
LVM=""
s_vm_list() {
    local ps
    ps=$(az_ vm list -d -g "$RG" --query "[?name=='$LVM'].powerState | [0]" -o tsv) || fail "az vm list -d"
    [[ "$ps" == "VM running" ]] || fail "az vm list -d powerState '$ps'"
    local n
    n=$(az_ vm list --query "length([?name=='$LVM'])" -o tsv) || fail "az vm list (subscription)"
    [[ "$n" == 1 ]] || fail "az vm list (subscription) found $n"
    echo "powerState=$ps"
}

s_instance_view() { wait_power "$LVM" PowerState/running 30; }

s_deallocate() {
    az_ vm deallocate -g "$RG" -n "$LVM" -o none || fail "az vm deallocate"
    wait_power "$LVM" PowerState/deallocated 10
}

s_start() {
    az_ vm start -g "$RG" -n "$LVM" -o none || fail "az vm start"
    wait_power "$LVM" PowerState/running 10
}

s_vm_delete() {
    local nics disks
    nics=$(az_ network nic list -g "$RG" --query "length(@)" -o tsv)
    disks=$(az_ disk list -g "$RG" --query "length(@)" -o tsv)
    echo "before: nics=$nics disks=$disks" >>"$CUR_LOG"
    az_ vm delete -g "$RG" -n "$LVM" --yes -o none || fail "az vm delete"
    if az_ vm show -g "$RG" -n "$LVM" -o none 2>/dev/null; then fail "VM still there"; fi
    nics=$(az_ network nic list -g "$RG" --query "[].name" -o tsv | paste -sd, -)
    disks=$(az_ disk list -g "$RG" --query "[].name" -o tsv | paste -sd, -)
    [[ -z "$nics" && -z "$disks" ]] || fail "left after VM delete: nics=[$nics] disks=[$disks]"
}

s_batch_account() {
    az_ batch account create -g "$RG" -n "$ACCT" -l "$LOC" -o none || fail "az batch account create"
    local ep
    ep=$(az_ batch account show -g "$RG" -n "$ACCT" --query accountEndpoint -o tsv) || fail "az batch account show"
    [[ -n "$ep" ]] || fail "no accountEndpoint"
    echo "accountEndpoint=$ep"
}

s_batch_pool_arm() {
    # The CLI has no management-plane pool commands (az batch pool is data plane), so the ARM
    # pool goes through the generic resource commands.
    local body=$WORK/pool.json id
    cat >"$body" <<'EOF'
{"location": "LOC", "properties": {"vmSize": "STANDARD_D2S_V3",
  "deploymentConfiguration": {"virtualMachineConfiguration": {
    "imageReference": {"publisher": "canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
    "nodeAgentSkuId": "batch.node.ubuntu 24.04"}},
  "scaleSettings": {"fixedScale": {"targetDedicatedNodes": 1, "targetLowPriorityNodes": 0}}}}
EOF
    # az resource create --is-full-object insists on a location even for this proxy resource.
    sed -i "s/\"LOC\"/\"$LOC\"/" "$body"
    id=/subscriptions/$SUB/resourceGroups/$RG/providers/Microsoft.Batch/batchAccounts/$ACCT/pools/$POOL
    az_ resource create --id "$id" --api-version 2025-06-01 --is-full-object --properties @"$body" -o none \
        || fail "az resource create (pool)"
    az_ resource patch --ids "$id" --api-version 2025-06-01 -o none \
        --properties '{"scaleSettings": {"fixedScale": {"targetDedicatedNodes": 2, "targetLowPriorityNodes": 0}}}' \
        || fail "az resource patch (pool resize)"
    local t
    t=$(az_ resource show --id "$id" --api-version 2025-06-01 \
        --query properties.scaleSettings.fixedScale.targetDedicatedNodes -o tsv) || fail "az resource show (pool)"
    [[ "$t" == 2 ]] || fail "targetDedicatedNodes '$t' after resize"
}

s_batch_dataplane() {
    az_ batch account login -g "$RG" -n "$ACCT" -o none || fail "az batch account login"
    local n
    n=$(az_ batch node list --pool-id "$POOL" --query "length(@)" -o tsv) || fail "az batch node list"
    echo "nodes=$n"
}

s_group_delete() {
    az_ group delete -n "$RG" --yes -o none || fail "az group delete"
    [[ $(az_ group exists -n "$RG") == false ]] || fail "group still exists"
}

# ------------------------------------------------------------------------------------------
step "cloud register (metadata/endpoints discovery)" s_cloud_register
if [[ -n "${OK["cloud register (metadata/endpoints discovery)"]:-}" ]]; then
    OK["cloud registered"]=1
else
    # Carry on with explicitly given endpoints so that the rest of the CLI still gets checked.
    step "cloud register (explicit endpoints, fallback)" s_cloud_register_explicit
    [[ -n "${OK["cloud register (explicit endpoints, fallback)"]:-}" ]] && OK["cloud registered"]=1
    CLOUD_MODE=explicit
fi
step "login --service-principal" s_login "cloud registered"
step "login with wrong secret fails AADSTS7000215" s_bad_secret "login --service-principal"
step "group create/show/exists" s_group "login --service-principal"
step "network vnet create (+subnet)" s_vnet "group create/show/exists"
step "network nsg create" s_nsg "group create/show/exists"
step "vm create (az vm create)" s_vm_create "network vnet create (+subnet)" "network nsg create"
if [[ -n "${OK["vm create (az vm create)"]:-}" ]]; then
    LVM=$VM
else
    step "vm create (az resource create, inline NIC)" s_vm_create_resource \
        "network vnet create (+subnet)" "network nsg create"
    [[ -n "${OK["vm create (az resource create, inline NIC)"]:-}" ]] && LVM=$VM2
fi
if [[ -n "$LVM" ]]; then
    OK["vm created"]=1
fi
step "vm list -d (power state)" s_vm_list "vm created"
step "vm get-instance-view running" s_instance_view "vm created"
step "vm deallocate" s_deallocate "vm created"
step "vm start" s_start "vm deallocate"
step "vm delete --yes (cascade NIC + disk)" s_vm_delete "vm created"
step "batch account create/show" s_batch_account "group create/show/exists"
step "batch pool create/patch via az resource" s_batch_pool_arm "batch account create/show"
step "batch data plane (account login, node list)" s_batch_dataplane "batch pool create/patch via az resource"
step "group delete" s_group_delete "group create/show/exists"

echo "# endpoints called by the CLI (method path?query [statuses]):"
HOSTPORT=${URL#https://}
"$PY" "$HERE/endpoints.py" --host "$HOSTPORT" \
    --names "sub=$SUB,tenant=$TENANT,rg=$RG,vnet=$VNET,subnet=$SUBNET,nsg=$NSG,vm=$VM,vm=$VM2,nic=$VM-nic,nic=$VM2-nic,nic=${VM}VMNic,disk=$VM2-osdisk,account=$ACCT,pool=$POOL" \
    "$LOGDIR"/*.log | sed 's/^/#   /'
echo "# az --debug logs: $LOGDIR"
if ((XFAILED)); then
    echo "$PASSED passed, $FAILED failed, $XFAILED expected failures (COMPAT_XFAIL)"
else
    echo "$PASSED passed, $FAILED failed"
fi
[[ "$FAILED" == 0 ]]
