#!/usr/bin/env python3
"""Compatibility check: Microsoft's Compute Schedule SDK (azure-mgmt-computeschedule 1.1.0,
api-version 2025-05-01) against the renderburst simulator, unchanged apart from the endpoint
and the CA.

Bulk-creates a few VMs with executeCreate (a base profile and per-VM overrides), polls their
operations, reads their errors, deallocates, starts and deletes them in bulk, cancels an
operation that has not started, and checks the per-VM and request-level errors. The resource
group and network are made with azure-mgmt-resource / azure-mgmt-network; power states are
read with azure-mgmt-compute.

Usage:
    computeschedule_check.py --url https://127.0.0.1:PORT --ca /path/ca.pem [--debug]

Output: one line per step, `PASS step` or `FAIL step: reason`; then the endpoints called; last
line `N passed, N failed`. Exit status 1 if any step failed.
"""

import argparse
import logging
import os
import sys
import time
import traceback
import uuid

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import endpoints as _endpoints  # noqa: E402
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.computeschedule import ComputeScheduleMgmtClient
from azure.mgmt.computeschedule.models import (
    CancelOperationsRequest,
    ExecuteCreateRequest,
    ExecuteDeallocateRequest,
    ExecuteDeleteRequest,
    ExecuteStartRequest,
    ExecutionParameters,
    GetOperationErrorsRequest,
    GetOperationStatusRequest,
    ResourceProvisionPayload,
    Resources,
    RetryPolicy,
)
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

ARM_SCOPE = "https://management.azure.com/.default"
DEFAULTS = {
    "tenant": "11111111-1111-1111-1111-111111111111",
    "client": "22222222-2222-2222-2222-222222222222",
    "secret": "sim-secret",
    "subscription": "33333333-3333-3333-3333-333333333333",
}
SIZE = "Standard_D2s_v5"
TERMINAL = {"Succeeded", "Failed", "Cancelled"}

EXCHANGES = []  # (method, url, status)
RESULTS = []  # (name, ok, reason)


def hook(pipeline_response):
    req, resp = pipeline_response.http_request, pipeline_response.http_response
    EXCHANGES.append((req.method, req.url, resp.status_code))


class CheckFailed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def describe(exc):
    if isinstance(exc, HttpResponseError):
        code = getattr(getattr(exc, "error", None), "code", None)
        return f"{type(exc).__name__} status={exc.status_code} code={code} msg={str(exc)[:300]!r}"
    return f"{type(exc).__name__}: {str(exc)[:500]}"


def run_step(name, fn, needs=()):
    for dep in needs:
        if not any(n == dep and ok for n, ok, _ in RESULTS):
            RESULTS.append((name, False, f"not run, prerequisite '{dep}' failed"))
            print(f"FAIL {name}: not run, prerequisite '{dep}' failed", flush=True)
            return None
    t0 = time.monotonic()
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001 - report everything
        if os.environ.get("COMPAT_TRACEBACK"):
            traceback.print_exc()
        RESULTS.append((name, False, describe(exc)))
        print(f"FAIL {name}: {describe(exc)}", flush=True)
        return None
    RESULTS.append((name, True, ""))
    extra = f" ({value})" if isinstance(value, str) and value else ""
    print(f"PASS {name}{extra} [{time.monotonic() - t0:.1f}s]", flush=True)
    return value if value is not None else True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=os.environ.get("SIM_URL"))
    ap.add_argument("--ca", default=os.environ.get("SIM_CA") or os.environ.get("REQUESTS_CA_BUNDLE"))
    ap.add_argument("--location", default=os.environ.get("SIM_LOCATION", "eastus"))
    ap.add_argument("--debug", action="store_true", help="azure.core DEBUG logging with bodies")
    args = ap.parse_args()
    if not args.url or not args.ca:
        ap.error("--url and --ca (or SIM_URL and SIM_CA) are required")
    url, ca, loc = args.url.rstrip("/"), args.ca, args.location
    tenant = os.environ.get("AZURE_TENANT_ID", DEFAULTS["tenant"])
    client_id = os.environ.get("AZURE_CLIENT_ID", DEFAULTS["client"])
    secret = os.environ.get("AZURE_CLIENT_SECRET", DEFAULTS["secret"])
    sub = os.environ.get("AZURE_SUBSCRIPTION_ID", DEFAULTS["subscription"])
    if args.debug:
        logging.basicConfig(stream=sys.stderr, level=logging.DEBUG)
        logging.getLogger("azure").setLevel(logging.DEBUG)

    suffix = uuid.uuid4().hex[:6]
    rg, vnet = f"compat-cs-{suffix}", f"vnet-{suffix}"
    names = [f"bulk-{suffix}-{i}" for i in range(3)]
    names_map = {rg: "{rg}", rg.lower(): "{rg}", vnet: "{vnet}", sub: "{sub}"}
    for n in names:
        names_map[n] = "{vm}"

    common = dict(connection_verify=ca, raw_response_hook=hook, logging_enable=args.debug)
    mgmt = dict(base_url=url, credential_scopes=[ARM_SCOPE], polling_interval=1, **common)
    cred = ClientSecretCredential(tenant, client_id, secret, authority=url,
                                  disable_instance_discovery=True, **common)
    resources = ResourceManagementClient(cred, sub, **mgmt)
    network = NetworkManagementClient(cred, sub, **mgmt)
    compute = ComputeManagementClient(cred, sub, **mgmt)
    schedule = ComputeScheduleMgmtClient(cred, sub, **mgmt)
    actions = schedule.scheduled_actions
    session = requests.Session()
    state = {}

    def control(method, path, body=None):
        r = session.request(method, url + path, json=body, timeout=10, verify=ca)
        check(r.status_code < 400, f"{method} {path} -> {r.status_code} {r.text[:300]!r}")
        return r.json() if r.content else {}

    def vm_id(name):
        return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}"

    def no_retry():
        return ExecutionParameters(retry_policy=RetryPolicy(retry_count=0, retry_window_in_minutes=5))

    def wait(ids, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            resp = actions.virtual_machines_get_operation_status(
                loc, GetOperationStatusRequest(operation_ids=ids, correlationid=str(uuid.uuid4())))
            ops = [r.operation for r in resp.results]
            check(all(o is not None for o in ops), f"status without operations: {resp.as_dict()}")
            if all(o.state in TERMINAL for o in ops):
                return ops
            check(time.monotonic() < deadline, f"operations not done in {timeout}s: {[o.state for o in ops]}")
            time.sleep(0.2)

    def power(name):
        v = compute.virtual_machines.get(rg, name, expand="instanceView")
        codes = [s.code for s in (v.instance_view.statuses or [])]
        return next((c.split("/", 1)[1] for c in codes if c.startswith("PowerState/")), None)

    # ---- set-up ----------------------------------------------------------------------------
    def s_setup():
        resources.resource_groups.create_or_update(rg, {"location": loc})
        v = network.virtual_networks.begin_create_or_update(rg, vnet, {
            "location": loc, "properties": {
                "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                "subnets": [{"name": "default", "properties": {"addressPrefix": "10.0.0.0/20"}}]},
        }).result().as_dict()
        state["subnet"] = v["properties"]["subnets"][0]["id"]
        control("PUT", "/_sim/config", {"compute_schedule": {"schedule_delay_ms": 200}})

    run_step("resource group and network (azure-mgmt-resource/-network)", s_setup)

    # ---- executeCreate -----------------------------------------------------------------------
    def s_create():
        subnet = state["subnet"]
        base = {
            "resourcegroupName": rg,
            "computeApiVersion": "2025-04-01",
            "location": loc,
            "tags": {"purpose": "compat"},
            "properties": {
                "hardwareProfile": {"vmSize": SIZE},
                "storageProfile": {
                    "imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts",
                                       "sku": "server", "version": "latest"},
                    "osDisk": {"createOption": "FromImage", "deleteOption": "Delete",
                               "managedDisk": {"storageAccountType": "StandardSSD_LRS"}},
                },
                "osProfile": {"adminUsername": "render",
                              "linuxConfiguration": {"disablePasswordAuthentication": True}},
            },
        }
        overrides = [{
            "name": n,
            "properties": {
                "osProfile": {"computerName": n},
                "networkProfile": {"networkApiVersion": "2020-11-01", "networkInterfaceConfigurations": [{
                    "name": f"{n}-nic",
                    "properties": {"primary": True, "deleteOption": "Delete", "ipConfigurations": [
                        {"name": "ip", "properties": {"subnet": {"id": subnet}}}]},
                }]},
            },
        } for n in names]
        req = ExecuteCreateRequest(
            resource_config_parameters=ResourceProvisionPayload(
                base_profile=base, resource_overrides=overrides, resource_count=len(names)),
            execution_parameters=ExecutionParameters(
                retry_policy=RetryPolicy(retry_count=2, retry_window_in_minutes=30)),
            correlationid=str(uuid.uuid4()),
        )
        resp = actions.virtual_machines_execute_create(loc, req)
        check(resp.type == "VirtualMachines" and resp.location == loc, f"envelope {resp.as_dict()}")
        check(len(resp.results) == len(names), f"{len(resp.results)} results for {len(names)} VMs")
        for r in resp.results:
            op = r.operation
            check(r.error_code is None and op is not None, f"refused: {r.as_dict()}")
            check(op.op_type == "Create", f"opType {op.op_type!r}")
            check(op.state == "PendingScheduling", f"state {op.state!r}")
            check(op.retry_policy.retry_count == 2, f"retry policy {op.retry_policy}")
            check(op.deadline is not None, "no deadline (datetime) parsed")
        state["create_ops"] = [r.operation.operation_id for r in resp.results]
        return f"{len(names)} operations"

    run_step("executeCreate 3 VMs (base profile + overrides)", s_create,
             needs=["resource group and network (azure-mgmt-resource/-network)"])

    def s_create_done():
        ops = wait(state["create_ops"])
        check(all(o.state == "Succeeded" for o in ops), f"states {[o.state for o in ops]}")
        check(all(o.completed_at is not None for o in ops), "completedAt missing")
        for n in names:
            v = compute.virtual_machines.get(rg, n)
            check(v.tags.get("purpose") == "compat", f"{n} tags {v.tags}")
            check(power(n) == "running", f"{n} power {power(n)}")
        errs = actions.virtual_machines_get_operation_errors(
            loc, GetOperationErrorsRequest(operation_ids=state["create_ops"]))
        check(all(r.operation_errors == [] for r in errs.results), f"errors {errs.as_dict()}")
        check(all(r.creation_time is not None for r in errs.results), "creationTime missing")

    run_step("getOperationStatus until Succeeded, getOperationErrors empty", s_create_done,
             needs=["executeCreate 3 VMs (base profile + overrides)"])

    # ---- deallocate / start ------------------------------------------------------------------
    def s_power(kind, want):
        def go():
            ids = [vm_id(n) for n in names]
            if kind == "deallocate":
                resp = actions.virtual_machines_execute_deallocate(loc, ExecuteDeallocateRequest(
                    execution_parameters=no_retry(), resources=Resources(ids=ids),
                    correlationid=str(uuid.uuid4())))
            else:
                resp = actions.virtual_machines_execute_start(loc, ExecuteStartRequest(
                    execution_parameters=no_retry(), resources=Resources(ids=ids),
                    correlationid=str(uuid.uuid4())))
            ops = wait([r.operation.operation_id for r in resp.results])
            check(all(o.state == "Succeeded" for o in ops), f"states {[o.state for o in ops]}")
            got = [power(n) for n in names]
            check(all(p == want for p in got), f"power states {got}, want {want}")
        return go

    run_step("executeDeallocate", s_power("deallocate", "deallocated"),
             needs=["getOperationStatus until Succeeded, getOperationErrors empty"])
    run_step("executeStart", s_power("start", "running"), needs=["executeDeallocate"])

    # ---- cancel --------------------------------------------------------------------------------
    def s_cancel():
        control("PUT", "/_sim/config", {"compute_schedule": {"schedule_delay_ms": 600000}})
        try:
            resp = actions.virtual_machines_execute_deallocate(loc, ExecuteDeallocateRequest(
                execution_parameters=no_retry(), resources=Resources(ids=[vm_id(names[0])]),
                correlationid=str(uuid.uuid4())))
            op_id = resp.results[0].operation.operation_id
            got = actions.virtual_machines_cancel_operations(
                loc, CancelOperationsRequest(operation_ids=[op_id], correlationid=str(uuid.uuid4())))
            check(len(got.results) == 1, f"cancel answered {got.as_dict()}")
            op = got.results[0].operation
            check(op.state == "Cancelled", f"state {op.state}")
            check(op.resource_operation_error.error_code == "OperationCancelledByUser",
                  f"error {op.resource_operation_error}")
            check(wait([op_id])[0].state == "Cancelled", "not Cancelled on the next poll")
            check(power(names[0]) == "running", "the cancelled deallocate ran")
        finally:
            control("PUT", "/_sim/config", {"compute_schedule": {"schedule_delay_ms": 200}})

    run_step("cancelOperations before the operation starts", s_cancel, needs=["executeStart"])

    # ---- errors -----------------------------------------------------------------------------
    def s_missing_vm():
        resp = actions.virtual_machines_execute_start(loc, ExecuteStartRequest(
            execution_parameters=no_retry(), resources=Resources(ids=[vm_id("no-such-vm")]),
            correlationid=str(uuid.uuid4())))
        r = resp.results[0]
        check(r.error_code == "ResourceNotFound" and r.operation is None, f"{r.as_dict()}")
        return f"errorCode {r.error_code}"

    run_step("a missing VM is answered with an errorCode", s_missing_vm,
             needs=["resource group and network (azure-mgmt-resource/-network)"])

    def s_too_many():
        ids = [vm_id(f"v{i}") for i in range(101)]
        try:
            actions.virtual_machines_execute_start(loc, ExecuteStartRequest(
                execution_parameters=no_retry(), resources=Resources(ids=ids),
                correlationid=str(uuid.uuid4())))
        except HttpResponseError as exc:
            check(exc.status_code == 400, f"status {exc.status_code}")
            check(exc.error.code == "InvalidParameter", f"code {exc.error.code}")
            return f"400 {exc.error.code}"
        raise CheckFailed("101 VMs accepted")

    run_step("101 VMs in one request -> 400", s_too_many)

    def s_bad_retry():
        try:
            actions.virtual_machines_execute_deallocate(loc, ExecuteDeallocateRequest(
                execution_parameters=ExecutionParameters(retry_policy=RetryPolicy(retry_count=8)),
                resources=Resources(ids=[vm_id(names[0])]), correlationid=str(uuid.uuid4())))
        except HttpResponseError as exc:
            check(exc.status_code == 400 and exc.error.code == "InvalidParameter", describe(exc))
            return f"400 {exc.error.code}"
        raise CheckFailed("retryCount 8 accepted")

    run_step("retryCount 8 -> 400", s_bad_retry)

    # ---- delete ------------------------------------------------------------------------------
    def s_delete():
        resp = actions.virtual_machines_execute_delete(loc, ExecuteDeleteRequest(
            execution_parameters=no_retry(), resources=Resources(ids=[vm_id(n) for n in names]),
            correlationid=str(uuid.uuid4()), force_deletion=False))
        ops = wait([r.operation.operation_id for r in resp.results])
        check(all(o.state == "Succeeded" and o.op_type == "Delete" for o in ops),
              f"{[(o.state, o.op_type) for o in ops]}")
        left = [n for n in names if any(v.name == n for v in compute.virtual_machines.list(rg))]
        check(not left, f"still there: {left}")
        nics = [n.name for n in network.network_interfaces.list(rg)]
        check(not nics, f"NICs left (deleteOption Delete): {nics}")

    run_step("executeDelete (NICs and disks go too)", s_delete, needs=["executeStart"])

    def s_cleanup():
        resources.resource_groups.begin_delete(rg).result()

    run_step("resource group delete", s_cleanup,
             needs=["resource group and network (azure-mgmt-resource/-network)"])

    lines = _endpoints.format_endpoints(
        (m, _endpoints.path_pattern(u, names_map), s) for m, u, s in EXCHANGES)
    print("# endpoints called by the SDKs (method path?query [statuses seen]):")
    for line in lines:
        print(f"#   {line}")
    passed = sum(1 for _, ok, _ in RESULTS if ok)
    failed = len(RESULTS) - passed
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
