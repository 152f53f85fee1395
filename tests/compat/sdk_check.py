#!/usr/bin/env python3
"""Compatibility check: the official Azure Python SDKs against the renderburst simulator.

The SDKs are used unchanged; only the endpoint (authority + ARM base URL) and the CA differ
from a real Azure run.

Usage:
    sdk_check.py [--url https://127.0.0.1:PORT] [--ca /path/ca.pem] [--debug]
                 [--endpoints-out FILE]

Environment fallbacks: SIM_URL, SIM_CA (or REQUESTS_CA_BUNDLE), AZURE_TENANT_ID,
AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_SUBSCRIPTION_ID, SIM_LOCATION.

Output: one line per step, `PASS step` or `FAIL step: reason`; then the distinct endpoints
called (`# endpoint METHOD PATH ?query-keys`); last line `N passed, N failed`.
Exit status 1 if any step failed.
"""

import argparse
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import endpoints as _endpoints  # noqa: E402
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.mgmt.batch import BatchManagementClient
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

ARM_SCOPE = "https://management.azure.com/.default"

DEFAULTS = {
    "tenant": "11111111-1111-1111-1111-111111111111",
    "client": "22222222-2222-2222-2222-222222222222",
    "secret": "sim-secret",
    "subscription": "33333333-3333-3333-3333-333333333333",
}

SSH_KEY = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDluT3ioAbAf285WDmTHiT15j1u233Y1xNpqvMbwzLo9Yqdfx4yTf"
    "H7zAc6wEhrdQh41OABXs9HiF13Hwnm44fhViZ3VxyxDeKvjdf6n/bAc6Hq22RIFcYIw+oRBLMgOEQwJAIRLhlvnuXd"
    "/j6pWayepL2y2uRERydqMC9AJWFyV5vLgy0bNSkOFD6U3PAv0/MVQDzH3CMEMPs67Gf8SSFpDol6TykVVv975uOSyM"
    "6fdeVM6zr56tFJvpkwyfWjD5pTY8d1GpfBaPP3H5U6hJg4y8yV9pyASnVN1+Q8NA6848dmDusxJsbZ4+ZWiOtiOgt/"
    "Tv3+7H8iw2FJMtRNdlm3 compat@renderburst"
)

# --------------------------------------------------------------------------------------------
# Recording of every HTTP exchange (ARM and Entra), via azure-core's CustomHookPolicy hooks.


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.exchanges = []  # dicts: step, method, url, status, headers, body
        self.step = "-"

    def hook(self, pipeline_response):
        req = pipeline_response.http_request
        resp = pipeline_response.http_response
        try:
            body = resp.text()
        except Exception:  # streamed / not loaded
            body = None
        with self.lock:
            self.exchanges.append(
                {
                    "step": self.step,
                    "thread": threading.get_ident(),
                    "method": req.method,
                    "url": req.url,
                    "status": resp.status_code,
                    "headers": {k.lower(): v for k, v in resp.headers.items()},
                    "body": body,
                    "t": time.monotonic(),
                }
            )

    def for_step(self, step):
        with self.lock:
            return [e for e in self.exchanges if e["step"] == step]


REC = Recorder()
NAMES = {}  # literal name -> placeholder, filled as the script creates resources

def path_pattern(url):
    return _endpoints.path_pattern(url, NAMES)


def short(e):
    return f"{e['method']} {e['url']} -> {e['status']}"


# --------------------------------------------------------------------------------------------
# Step bookkeeping.

RESULTS = []  # (name, ok, reason)


def describe_exception(exc):
    if isinstance(exc, HttpResponseError):
        resp = getattr(exc, "response", None)
        req = getattr(resp, "request", None) if resp is not None else None
        where = ""
        if req is not None:
            where = f" [{req.method} {req.url} -> {resp.status_code}]"
        body = ""
        try:
            body = (resp.text() or "")[:400] if resp is not None else ""
        except Exception:
            pass
        code = getattr(getattr(exc, "error", None), "code", None)
        return f"{type(exc).__name__} code={code} msg={str(exc.message if hasattr(exc, 'message') else exc)[:300]!r}{where} body={body!r}"
    return f"{type(exc).__name__}: {str(exc)[:500]}"


def run_step(name, fn, needs=()):
    for dep in needs:
        if not any(n == dep and ok for n, ok, _ in RESULTS):
            reason = f"not run, prerequisite '{dep}' failed"
            RESULTS.append((name, False, reason))
            print(f"FAIL {name}: {reason}", flush=True)
            return None
    REC.step = name
    t0 = time.monotonic()
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001 - report everything
        reason = describe_exception(exc)
        tail = [short(e) for e in REC.for_step(name)][-4:]
        if tail:
            reason += " | last exchanges: " + " ; ".join(tail)
        if os.environ.get("COMPAT_TRACEBACK"):
            traceback.print_exc()
        RESULTS.append((name, False, reason))
        print(f"FAIL {name}: {reason}", flush=True)
        return None
    finally:
        REC.step = "-"
    dt = time.monotonic() - t0
    RESULTS.append((name, True, ""))
    extra = f" ({value})" if isinstance(value, str) and value else ""
    print(f"PASS {name}{extra} [{dt:.1f}s]", flush=True)
    return value if value is not None else True


class CheckFailed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)


# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=os.environ.get("SIM_URL"))
    ap.add_argument("--ca", default=os.environ.get("SIM_CA") or os.environ.get("REQUESTS_CA_BUNDLE"))
    ap.add_argument("--location", default=os.environ.get("SIM_LOCATION", "eastus"))
    ap.add_argument("--debug", action="store_true", help="azure.core DEBUG logging with bodies")
    ap.add_argument("--endpoints-out", help="also write the endpoint list to this file")
    ap.add_argument("--throttle-requests", type=int, default=12)
    args = ap.parse_args()
    if not args.url or not args.ca:
        ap.error("--url and --ca (or SIM_URL and SIM_CA) are required")
    url = args.url.rstrip("/")
    ca = args.ca
    loc = args.location
    tenant = os.environ.get("AZURE_TENANT_ID", DEFAULTS["tenant"])
    client_id = os.environ.get("AZURE_CLIENT_ID", DEFAULTS["client"])
    secret = os.environ.get("AZURE_CLIENT_SECRET", DEFAULTS["secret"])
    sub = os.environ.get("AZURE_SUBSCRIPTION_ID", DEFAULTS["subscription"])

    if args.debug:
        logging.basicConfig(stream=sys.stderr, level=logging.DEBUG,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
        logging.getLogger("azure").setLevel(logging.DEBUG)
        logging.getLogger("msal").setLevel(logging.DEBUG)
    else:
        # azure-identity logs the expected wrong-secret failure as a WARNING; keep stdout clean.
        logging.getLogger("azure.identity").setLevel(logging.ERROR)

    suffix = uuid.uuid4().hex[:6]
    rg = f"compat-sdk-{suffix}"
    vnet, subnet, nsg = f"vnet-{suffix}", "default", f"nsg-{suffix}"
    vm = f"vm-{suffix}"
    nic_cfg = f"{vm}-nic"
    os_disk = f"{vm}-osdisk"
    acct = f"compat{suffix}"
    pool = f"pool-{suffix}"
    for lit, ph in [(sub, "{sub}"), (tenant, "{tenant}"), (rg, "{rg}"), (vnet, "{vnet}"),
                    (nsg, "{nsg}"), (nsg + "-b", "{nsg2}"), (vm, "{vm}"), (nic_cfg, "{nic}"), (os_disk, "{disk}"),
                    (acct, "{account}"), (pool, "{pool}"), (subnet, "{subnet}")]:
        NAMES[lit] = ph
        NAMES[lit.lower()] = ph

    common = dict(
        connection_verify=ca,
        raw_response_hook=REC.hook,
        logging_enable=args.debug,
    )
    mgmt_kwargs = dict(
        base_url=url,
        credential_scopes=[ARM_SCOPE],
        polling_interval=1,
        **common,
    )

    state = {}

    # ---- Entra -------------------------------------------------------------------------
    cred = ClientSecretCredential(
        tenant, client_id, secret,
        authority=url,
        disable_instance_discovery=True,
        **common,
    )

    def s_token():
        tok = cred.get_token(ARM_SCOPE)
        check(tok.token, "empty access token")
        check(tok.expires_on > time.time(), f"token already expired: expires_on={tok.expires_on}")
        state["token"] = tok.token
        return f"expires in {int(tok.expires_on - time.time())}s"

    run_step("entra token (client_credentials)", s_token)

    def s_bad_secret():
        from azure.core.exceptions import ClientAuthenticationError
        bad = ClientSecretCredential(tenant, client_id, "wrong-secret", authority=url,
                                     disable_instance_discovery=True, connection_verify=ca)
        try:
            bad.get_token(ARM_SCOPE)
        except ClientAuthenticationError as exc:
            check("AADSTS7000215" in str(exc), f"error lacks AADSTS7000215: {str(exc)[:300]!r}")
            return
        raise CheckFailed("token issued for a wrong secret")

    run_step("entra wrong secret -> invalid_client", s_bad_secret)

    resources = ResourceManagementClient(cred, sub, **mgmt_kwargs)
    network = NetworkManagementClient(cred, sub, **mgmt_kwargs)
    compute = ComputeManagementClient(cred, sub, **mgmt_kwargs)
    batch = BatchManagementClient(cred, sub, **mgmt_kwargs)

    # ---- Control API (plain HTTPS + JSON, not ARM) ---------------------------------------------
    session = requests.Session()

    def control(method, path, body=None):
        # verify= per call: a session-level verify loses to REQUESTS_CA_BUNDLE in the environment.
        r = session.request(method, url + path, json=body, timeout=10, verify=ca)
        if r.status_code == 401:
            r = session.request(method, url + path, json=body, timeout=10, verify=ca,
                                headers={"Authorization": f"Bearer {cred.get_token(ARM_SCOPE).token}"})
        if r.status_code >= 400:
            raise CheckFailed(f"{method} {path} -> {r.status_code} {r.text[:300]!r}")
        return r.json() if r.content else {}

    def s_no_token():
        r = session.get(f"{url}/subscriptions/{sub}/resourcegroups?api-version=2025-04-01", timeout=10, verify=ca)
        check(r.status_code == 401, f"GET resourcegroups without token -> {r.status_code}, want 401")
        code = (r.json().get("error") or {}).get("code") if r.content else None
        check(code, f"401 without ARM error body: {r.text[:200]!r}")
        return f"code {code}"

    run_step("arm without token -> 401", s_no_token)

    # ---- Resource group + network -----------------------------------------------------------
    def s_rg():
        r = resources.resource_groups.create_or_update(rg, {"location": loc, "tags": {"purpose": "compat"}})
        d = r.as_dict()
        check(d.get("name", "").lower() == rg.lower(), f"name {d.get('name')!r}")
        check(d.get("properties", {}).get("provisioningState") == "Succeeded", f"state {d.get('properties')}")
        g = resources.resource_groups.get(rg).as_dict()
        check(g.get("tags", {}).get("purpose") == "compat", f"tags {g.get('tags')}")
        check(resources.resource_groups.check_existence(rg), "check_existence (HEAD) false")

    run_step("resource group create/get/head", s_rg)

    def s_nsg():
        r = network.network_security_groups.begin_create_or_update(
            rg, nsg,
            {"location": loc, "properties": {"securityRules": [{
                "name": "deny-ssh-in", "properties": {
                    "protocol": "Tcp", "sourcePortRange": "*", "destinationPortRange": "22",
                    "sourceAddressPrefix": "*", "destinationAddressPrefix": "*",
                    "access": "Deny", "priority": 200, "direction": "Inbound"}}]}},
        ).result().as_dict()
        check(r.get("properties", {}).get("provisioningState") == "Succeeded", f"state {r.get('properties', {}).get('provisioningState')}")
        state["nsg_id"] = r["id"]

    run_step("nsg create", s_nsg, needs=["resource group create/get/head"])

    def s_vnet():
        r = network.virtual_networks.begin_create_or_update(
            rg, vnet,
            {"location": loc, "properties": {
                "addressSpace": {"addressPrefixes": ["10.42.0.0/16"]},
                "subnets": [{"name": subnet, "properties": {"addressPrefix": "10.42.1.0/24"}}]}},
        ).result().as_dict()
        check(r.get("properties", {}).get("provisioningState") == "Succeeded", "vnet not Succeeded")
        subs = r.get("properties", {}).get("subnets", [])
        check(len(subs) == 1 and subs[0].get("id"), f"subnets in vnet body: {subs}")
        s = network.subnets.get(rg, vnet, subnet).as_dict()
        check(s.get("id", "").lower() == subs[0]["id"].lower(), f"subnet id {s.get('id')} vs {subs[0]['id']}")
        state["subnet_id"] = s["id"]

    run_step("vnet+subnet create/get", s_vnet, needs=["resource group create/get/head"])

    def s_paging():
        network.network_security_groups.begin_create_or_update(rg, nsg + "-b", {"location": loc}).result()
        control("PUT", "/_sim/config", {"paging": {"page_size": 1}})
        step = "paging follows nextLink (page_size=1)"
        try:
            names = [n.as_dict().get("name") for n in network.network_security_groups.list(rg)]
        finally:
            control("PUT", "/_sim/config", {"paging": {"page_size": 50}})
        check(sorted(names) == sorted([nsg, nsg + "-b"]), f"NSGs listed {names}")
        pages = [e for e in REC.for_step(step) if e["method"] == "GET" and "/networkSecurityGroups" in e["url"]]
        check(len(pages) >= 2, f"only {len(pages)} page request(s): {[e['url'] for e in pages]}")
        nxt = pages[1]["url"]
        check("api-version=" in nxt, f"nextLink lacks api-version: {nxt}")
        network.network_security_groups.begin_delete(rg, nsg + "-b").result()
        return f"{len(pages)} pages, nextLink {path_pattern(nxt)}"

    run_step("paging follows nextLink (page_size=1)", s_paging, needs=["nsg create"])

    # ---- VM with inline NIC ---------------------------------------------------------------
    def vm_body():
        return {
            "location": loc,
            "tags": {"renderburst-pool": "compat", "renderburst-owner": "compat"},
            "properties": {
                "hardwareProfile": {"vmSize": "Standard_D2s_v3"},
                "storageProfile": {
                    "imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts",
                                       "sku": "server", "version": "latest"},
                    "osDisk": {"name": os_disk, "createOption": "FromImage", "deleteOption": "Delete",
                               "managedDisk": {"storageAccountType": "Standard_LRS"}},
                },
                "osProfile": {
                    "computerName": vm, "adminUsername": "azureuser",
                    "linuxConfiguration": {"disablePasswordAuthentication": True, "ssh": {"publicKeys": [
                        {"path": "/home/azureuser/.ssh/authorized_keys", "keyData": SSH_KEY}]}},
                },
                "networkProfile": {
                    "networkApiVersion": "2020-11-01",
                    "networkInterfaceConfigurations": [{
                        "name": nic_cfg,
                        "properties": {
                            "primary": True,
                            "deleteOption": "Delete",
                            "networkSecurityGroup": {"id": state["nsg_id"]},
                            "ipConfigurations": [{"name": "ipconfig1", "properties": {
                                "primary": True, "subnet": {"id": state["subnet_id"]}}}],
                        },
                    }],
                },
            },
        }

    def s_vm_create():
        poller = compute.virtual_machines.begin_create_or_update(rg, vm, vm_body())
        r = poller.result().as_dict()
        p = r.get("properties", {})
        check(p.get("provisioningState") == "Succeeded", f"provisioningState {p.get('provisioningState')}")
        check(p.get("vmId"), "no vmId")
        check(r.get("tags", {}).get("renderburst-pool") == "compat", f"tags {r.get('tags')}")
        od = p.get("storageProfile", {}).get("osDisk", {})
        check(od.get("deleteOption") == "Delete", f"osDisk.deleteOption {od.get('deleteOption')}")
        exch = REC.for_step("vm create (inline NIC, LRO)")
        put = [e for e in exch if e["method"] == "PUT"]
        return f"PUT -> {put[0]['status'] if put else '?'}, {len(exch)} exchanges"

    run_step("vm create (inline NIC, LRO)", s_vm_create, needs=["nsg create", "vnet+subnet create/get"])

    def s_inline_children():
        nics = [n.as_dict() for n in network.network_interfaces.list(rg)]
        check(len(nics) == 1, f"expected 1 NIC in RG, got {[n.get('name') for n in nics]}")
        nic = nics[0]
        vmref = nic.get("properties", {}).get("virtualMachine", {}).get("id", "")
        check(vmref.lower().endswith(f"/virtualmachines/{vm}".lower()), f"NIC.virtualMachine.id={vmref!r}")
        disks = [d.as_dict() for d in compute.disks.list_by_resource_group(rg)]
        check(len(disks) == 1, f"expected 1 disk in RG, got {[d.get('name') for d in disks]}")
        state["nic_name"] = nic["name"]
        state["disk_name"] = disks[0]["name"]
        NAMES.setdefault(nic["name"], "{nic}")
        NAMES.setdefault(disks[0]["name"], "{disk}")
        g = compute.virtual_machines.get(rg, vm).as_dict()
        nics_ref = g.get("properties", {}).get("networkProfile", {}).get("networkInterfaces", [])
        check(nics_ref and nics_ref[0].get("id", "").lower() == nic["id"].lower(),
              f"VM networkProfile.networkInterfaces {nics_ref} vs NIC {nic['id']}")
        return f"nic={nic['name']} disk={disks[0]['name']}"

    run_step("vm inline NIC and OS disk exist", s_inline_children, needs=["vm create (inline NIC, LRO)"])

    def power_state_from(vmdict):
        sts = (vmdict.get("properties", {}).get("instanceView", {}) or {}).get("statuses", []) or []
        ps = [s.get("code") for s in sts if str(s.get("code", "")).startswith("PowerState/")]
        return ps[0] if ps else None

    def list_all_power():
        found = None
        for v in compute.virtual_machines.list_all(status_only="true"):
            d = v.as_dict()
            if d.get("name", "").lower() == vm.lower():
                found = d
        check(found is not None, "VM not in list_all(statusOnly=true)")
        return power_state_from(found)

    def wait_power(expected, timeout=30):
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            ps = list_all_power()
            if not seen or seen[-1] != ps:
                seen.append(ps)
            if ps == expected:
                return " -> ".join(str(s) for s in seen)
            if time.monotonic() > deadline:
                raise CheckFailed(f"power state {ps!r} after {timeout}s, want {expected!r} (seen {seen})")
            time.sleep(1)

    run_step("vm list_all(statusOnly) running", lambda: wait_power("PowerState/running"),
             needs=["vm create (inline NIC, LRO)"])

    def s_instance_view():
        g = compute.virtual_machines.get(rg, vm, expand="instanceView").as_dict()
        check(power_state_from(g) == "PowerState/running", f"$expand=instanceView power {power_state_from(g)}")
        iv = compute.virtual_machines.instance_view(rg, vm).as_dict()
        codes = [s.get("code") for s in iv.get("statuses", [])]
        check("PowerState/running" in codes, f"instanceView statuses {codes}")
        lst = [v.as_dict() for v in compute.virtual_machines.list(rg)]
        check(any(v.get("name", "").lower() == vm.lower() for v in lst), "VM missing from list by RG")

    run_step("vm get $expand=instanceView / instanceView / list by RG", s_instance_view,
             needs=["vm create (inline NIC, LRO)"])

    def s_deallocate():
        compute.virtual_machines.begin_deallocate(rg, vm).result()
        return wait_power("PowerState/deallocated", timeout=10)

    run_step("vm deallocate", s_deallocate, needs=["vm create (inline NIC, LRO)"])

    def s_start():
        compute.virtual_machines.begin_start(rg, vm).result()
        return wait_power("PowerState/running", timeout=10)

    run_step("vm start", s_start, needs=["vm deallocate"])

    def s_vm_delete():
        compute.virtual_machines.begin_delete(rg, vm).result()
        try:
            compute.virtual_machines.get(rg, vm)
            raise CheckFailed("VM still there after delete")
        except ResourceNotFoundError:
            pass

    run_step("vm delete (LRO)", s_vm_delete, needs=["vm create (inline NIC, LRO)"])

    def s_cascade():
        nics = [n.as_dict().get("name") for n in network.network_interfaces.list(rg)]
        check(not nics, f"NICs left after VM delete: {nics}")
        disks = [d.as_dict().get("name") for d in compute.disks.list_by_resource_group(rg)]
        check(not disks, f"disks left after VM delete: {disks}")
        if state.get("nic_name"):
            try:
                network.network_interfaces.get(rg, state["nic_name"])
                raise CheckFailed("GET NIC still 200")
            except ResourceNotFoundError:
                pass
        if state.get("disk_name"):
            try:
                compute.disks.get(rg, state["disk_name"])
                raise CheckFailed("GET disk still 200")
            except ResourceNotFoundError:
                pass

    run_step("vm delete cascades NIC + OS disk", s_cascade, needs=["vm delete (LRO)"])

    # ---- Batch (management plane) ---------------------------------------------------------
    def s_batch_account():
        r = batch.batch_account.begin_create(
            rg, acct, {"location": loc, "properties": {"poolAllocationMode": "BatchService"}},
        ).result().as_dict()
        p = r.get("properties", {})
        check(p.get("provisioningState") == "Succeeded", f"provisioningState {p.get('provisioningState')}")
        g = batch.batch_account.get(rg, acct).as_dict()
        state["account_endpoint"] = g.get("properties", {}).get("accountEndpoint")
        return f"accountEndpoint={state['account_endpoint']}"

    run_step("batch account create (LRO)", s_batch_account, needs=["resource group create/get/head"])

    def s_pool_create():
        body = {"properties": {
            "vmSize": "STANDARD_D2S_V3",
            "deploymentConfiguration": {"virtualMachineConfiguration": {
                "imageReference": {"publisher": "canonical", "offer": "ubuntu-24_04-lts",
                                   "sku": "server", "version": "latest"},
                "nodeAgentSkuId": "batch.node.ubuntu 24.04"}},
            "scaleSettings": {"fixedScale": {"targetDedicatedNodes": 1, "targetLowPriorityNodes": 0,
                                             "resizeTimeout": "PT15M"}},
            "taskSlotsPerNode": 1,
        }}
        r = batch.pool.create(rg, acct, pool, body).as_dict()
        fs = r.get("properties", {}).get("scaleSettings", {}).get("fixedScale", {})
        check(fs.get("targetDedicatedNodes") == 1, f"fixedScale {fs}")
        exch = [e for e in REC.for_step("batch pool create (PUT)") if e["method"] == "PUT"]
        etag = exch[-1]["headers"].get("etag") if exch else None
        check(etag, "no ETag header on pool PUT")
        return f"PUT -> {exch[-1]['status']}, ETag {etag}"

    run_step("batch pool create (PUT)", s_pool_create, needs=["batch account create (LRO)"])

    def s_pool_resize():
        body = {"properties": {"scaleSettings": {"fixedScale": {"targetDedicatedNodes": 2,
                                                                "targetLowPriorityNodes": 1}}}}
        r = batch.pool.update(rg, acct, pool, body).as_dict()
        fs = r.get("properties", {}).get("scaleSettings", {}).get("fixedScale", {})
        check(fs.get("targetDedicatedNodes") == 2 and fs.get("targetLowPriorityNodes") == 1,
              f"PATCH response fixedScale {fs}")
        g = batch.pool.get(rg, acct, pool).as_dict()
        p = g.get("properties", {})
        fs = p.get("scaleSettings", {}).get("fixedScale", {})
        check(fs.get("targetDedicatedNodes") == 2 and fs.get("targetLowPriorityNodes") == 1,
              f"GET fixedScale {fs}")
        check(p.get("vmSize", "").lower() == "standard_d2s_v3", f"PATCH lost vmSize: {p.get('vmSize')}")
        return f"allocationState={p.get('allocationState')}"

    run_step("batch pool resize (PATCH) + get", s_pool_resize, needs=["batch pool create (PUT)"])

    def s_pool_steady():
        deadline = time.monotonic() + 30
        while True:
            p = batch.pool.get(rg, acct, pool).as_dict().get("properties", {})
            cur = (p.get("currentDedicatedNodes"), p.get("currentLowPriorityNodes"))
            if p.get("allocationState") == "Steady" and cur == (2, 1):
                return f"current={cur}"
            if time.monotonic() > deadline:
                raise CheckFailed(f"allocationState={p.get('allocationState')} current={cur} "
                                  f"resizeOperationStatus={p.get('resizeOperationStatus')}")
            time.sleep(1)

    run_step("batch pool reaches targets (Steady)", s_pool_steady, needs=["batch pool resize (PATCH) + get"])

    def s_pool_list():
        names = [p.as_dict().get("name") for p in batch.pool.list_by_batch_account(rg, acct)]
        check(pool in names, f"pool list {names}")

    run_step("batch pool list", s_pool_list, needs=["batch pool create (PUT)"])

    def s_pool_delete():
        batch.pool.begin_delete(rg, acct, pool).result()
        try:
            batch.pool.get(rg, acct, pool)
            raise CheckFailed("pool still there after delete")
        except ResourceNotFoundError:
            pass

    run_step("batch pool delete (LRO)", s_pool_delete, needs=["batch pool create (PUT)"])

    def s_account_delete():
        batch.batch_account.begin_delete(rg, acct).result()

    run_step("batch account delete (LRO)", s_account_delete, needs=["batch account create (LRO)"])

    # ---- Throttling -----------------------------------------------------------------------
    def s_ratelimit_headers():
        resources.resource_groups.get(rg)
        e = [x for x in REC.for_step("arm x-ms-ratelimit headers") if x["method"] == "GET"][-1]
        h = e["headers"]
        check("x-ms-ratelimit-remaining-subscription-reads" in h,
              f"GET lacks x-ms-ratelimit-remaining-subscription-reads; headers {sorted(h)}")
        return f"reads remaining {h['x-ms-ratelimit-remaining-subscription-reads']}"

    run_step("arm x-ms-ratelimit headers", s_ratelimit_headers, needs=["resource group create/get/head"])

    def s_throttle():
        before = control("GET", "/_sim/stats").get("throttled_429", 0)
        control("PUT", "/_sim/config", {"limits": {"reads_bucket": 5, "reads_per_s": 1}})
        # retry_status raised from its default (3) so that a burst of N reads against a bucket of
        # 5 refilled at 1/s can always finish; the retry logic itself is the SDK's own.
        tclient = ResourceManagementClient(cred, sub, retry_status=args.throttle_requests,
                                           retry_total=args.throttle_requests + 5, **mgmt_kwargs)
        step = "throttled reads retried to success"
        n = args.throttle_requests

        def one(_):
            REC.step = step  # thread-local enough: all workers use the same step name
            return tclient.resource_groups.get(rg).as_dict().get("name")

        try:
            t0 = time.monotonic()
            with ThreadPoolExecutor(max_workers=n) as ex:
                names = list(ex.map(one, range(n)))
            dt = time.monotonic() - t0
        finally:
            control("PUT", "/_sim/config", {"limits": {"reads_bucket": 250, "reads_per_s": 25}})
        check(all(x and x.lower() == rg.lower() for x in names), f"results {names}")
        exch = [e for e in REC.exchanges if e["step"] == step and e["method"] == "GET"]
        t429 = [e for e in exch if e["status"] == 429]
        check(t429, f"no 429 seen in {len(exch)} GETs (bucket 5, {n} parallel reads)")
        bad_ra = [e["headers"].get("retry-after") for e in t429
                  if not str(e["headers"].get("retry-after", "")).strip().isdigit()
                  or int(e["headers"]["retry-after"]) < 1]
        check(not bad_ra, f"429 with missing/invalid Retry-After: {bad_ra}")
        codes = set()
        for e in t429:
            try:
                codes.add(json.loads(e["body"])["error"]["code"])
            except Exception:
                codes.add(f"unparseable body {str(e['body'])[:80]!r}")
        after = control("GET", "/_sim/stats").get("throttled_429", 0)
        check(after - before >= len(t429), f"/_sim/stats throttled_429 {before}->{after}, client saw {len(t429)}")
        ras = sorted({e["headers"].get("retry-after") for e in t429})
        return (f"{n} reads ok in {dt:.1f}s, {len(t429)} x 429 (Retry-After {','.join(ras)}; "
                f"codes {','.join(sorted(codes))}), stats throttled_429 +{after - before}")

    run_step("throttled reads retried to success", s_throttle, needs=["resource group create/get/head"])

    # ---- Cleanup --------------------------------------------------------------------------
    def s_rg_delete():
        resources.resource_groups.begin_delete(rg).result()
        check(not resources.resource_groups.check_existence(rg), "RG still exists")

    run_step("resource group delete (LRO)", s_rg_delete, needs=["resource group create/get/head"])

    # ---- Report ---------------------------------------------------------------------------
    lines = _endpoints.format_endpoints(
        (e["method"], path_pattern(e["url"]), e["status"]) for e in REC.exchanges)
    print("# endpoints called by the SDKs (method path?query [statuses seen]):")
    for line in lines:
        print(f"#   {line}")
    if args.endpoints_out:
        with open(args.endpoints_out, "w") as f:
            f.write("\n".join(lines) + "\n")
    passed = sum(1 for _, ok, _ in RESULTS if ok)
    failed = len(RESULTS) - passed
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
