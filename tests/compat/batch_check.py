#!/usr/bin/env python3
"""Compatibility check: the official azure-mgmt-batch client sees the Batch pool that
renderburst created, with the fields renderburst set.

Starts `renderburst serve` against the simulator (its own SQLite file and config in a temp
dir), declares a `mode: batch` pool through renderburst's HTTP API, waits until Batch reached
its targets, then reads the pool with `BatchManagementClient` (endpoint and CA are the only
differences from a real Azure run) and compares every field renderburst sets.

Usage:
    batch_check.py --url https://127.0.0.1:PORT --ca /path/ca.pem [--bin target/debug/renderburst]

Output: one line per step, `PASS step` or `FAIL step: reason`; last line `N passed, N failed`.
Exit status 1 if any step failed.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import requests
from azure.identity import ClientSecretCredential
from azure.mgmt.batch import BatchManagementClient

ARM_SCOPE = "https://management.azure.com/.default"
TENANT = "11111111-1111-1111-1111-111111111111"
CLIENT = "22222222-2222-2222-2222-222222222222"
SECRET = "sim-secret"
SUB = "33333333-3333-3333-3333-333333333333"
RG = "compat-batch"
ACCOUNT = "compatbatch"
POOL = "arnold"
ADMIN = "compat-admin-token-0123456789"

SPEC = {
    "name": POOL,
    "mode": "batch",
    "vm_sizes": ["Standard_D4s_v5"],
    "priority": "spot",
    "image": "Canonical:ubuntu-24_04-lts:server:latest",
    "max": 8,
    "target": 5,
    "idle_timeout_seconds": 0,
    "tags": {"show": "compat"},
    "batch": {
        "account": ACCOUNT,
        "node_agent_sku_id": "batch.node.ubuntu 24.04",
        "task_slots_per_node": 2,
        "spot_cap": 3,
        "start_task": {
            "command_line": "/bin/sh -c 'echo ready'",
            "environment": {"SHOW": "compat"},
            "elevated": True,
        },
    },
    "licenses": [
        {"name": "arnold", "variable": "ADSKFLEX_LICENSE_FILE", "server": "27000@lic.studio.lan"}
    ],
}

RESULTS = []


def step(name, fn):
    try:
        extra = fn()
    except Exception as exc:  # noqa: BLE001 - report everything
        RESULTS.append(False)
        print(f"FAIL {name}: {type(exc).__name__}: {str(exc)[:600]}", flush=True)
        return False
    RESULTS.append(True)
    print(f"PASS {name}" + (f" ({extra})" if extra else ""), flush=True)
    return True


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def enum_text(v):
    """The wire value of an SDK enum (or the string the SDK kept)."""
    return getattr(v, "value", v)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=os.environ.get("SIM_URL"))
    ap.add_argument("--ca", default=os.environ.get("SIM_CA"))
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--bin", default=os.environ.get(
        "RENDERBURST", os.path.join(here, "..", "..", "target", "debug", "renderburst")))
    args = ap.parse_args()
    if not args.url or not args.ca:
        ap.error("--url and --ca (or SIM_URL and SIM_CA) are required")
    url = args.url.rstrip("/")

    tmp = tempfile.mkdtemp(prefix="compat-batch.")
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    cfg = os.path.join(tmp, "renderburst.toml")
    with open(cfg, "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:{port}"
[store]
url = "sqlite://{tmp}/renderburst.db"
[controller]
reconcile_interval_seconds = 1
[auth]
admin_token = "{ADMIN}"
[azure]
subscription_id = "{SUB}"
tenant_id = "{TENANT}"
client_id = "{CLIENT}"
client_secret = "{SECRET}"
arm_endpoint = "{url}"
authority_host = "{url}"
ca_cert_file = "{args.ca}"
resource_group = "{RG}"
ensure_network = true
batch_account = "{ACCOUNT}"
""")
    log = open(os.path.join(tmp, "daemon.log"), "w")
    daemon = subprocess.Popen([args.bin, "serve", "--config", cfg], stdout=log, stderr=log,
                              env={**os.environ, "RUST_LOG": "warn"})
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {ADMIN}"
    try:
        def s_daemon():
            deadline = time.time() + 30
            while time.time() < deadline:
                check(daemon.poll() is None, f"renderburst exited: see {tmp}/daemon.log")
                try:
                    if requests.get(f"{api}/readyz", timeout=2).ok:
                        return api
                except requests.RequestException:
                    pass
                time.sleep(0.2)
            raise AssertionError("renderburst not ready within 30 s")

        if not step("renderburst serve against the simulator", s_daemon):
            return

        def s_apply():
            r = http.post(f"{api}/v1/pools", json=SPEC, timeout=10)
            check(r.status_code == 201, f"{r.status_code} {r.text[:300]}")

        if not step("batch pool declared through the renderburst API", s_apply):
            return

        cred = ClientSecretCredential(TENANT, CLIENT, SECRET, authority=url,
                                      disable_instance_discovery=True, connection_verify=args.ca)
        batch = BatchManagementClient(cred, SUB, base_url=url, credential_scopes=[ARM_SCOPE],
                                      connection_verify=args.ca, polling_interval=1)
        seen = {}

        def s_steady():
            deadline = time.time() + 60
            last = None
            while time.time() < deadline:
                try:
                    p = batch.pool.get(RG, ACCOUNT, POOL)
                    last = (p.allocation_state, p.current_dedicated_nodes, p.current_low_priority_nodes)
                    if last == ("Steady", 2, 3):
                        seen["pool"] = p
                        return "Steady, 2 dedicated + 3 Spot"
                except Exception as exc:  # noqa: BLE001 - not created yet
                    last = type(exc).__name__
                time.sleep(0.5)
            raise AssertionError(f"pool not at 2 dedicated + 3 Spot within 60 s: {last}")

        if not step("azure-mgmt-batch: pool.get sees the pool at its targets", s_steady):
            return
        p = seen["pool"]

        def s_fields():
            check(p.name == POOL, f"name {p.name}")
            check(p.vm_size.lower() == "standard_d4s_v5", f"vm_size {p.vm_size}")
            fixed = p.scale_settings.fixed_scale
            check((fixed.target_dedicated_nodes, fixed.target_low_priority_nodes) == (2, 3),
                  f"targets {fixed}")
            check(enum_text(fixed.node_deallocation_option) == "TaskCompletion",
                  f"nodeDeallocationOption {fixed.node_deallocation_option}")
            vmc = p.deployment_configuration.virtual_machine_configuration
            check(vmc.node_agent_sku_id == "batch.node.ubuntu 24.04", f"agent {vmc.node_agent_sku_id}")
            img = vmc.image_reference
            check((img.publisher, img.offer, img.sku, img.version)
                  == ("Canonical", "ubuntu-24_04-lts", "server", "latest"), f"image {img}")
            check(p.task_slots_per_node == 2, f"taskSlotsPerNode {p.task_slots_per_node}")
            st = p.start_task
            check(st.command_line == "/bin/sh -c 'echo ready'", f"commandLine {st.command_line}")
            env = {e.name: e.value for e in st.environment_settings}
            check(env == {"ADSKFLEX_LICENSE_FILE": "27000@lic.studio.lan", "SHOW": "compat"},
                  f"environment {env}")
            check(st.wait_for_success is True, f"waitForSuccess {st.wait_for_success}")
            auto = st.user_identity.auto_user
            check(enum_text(auto.elevation_level) == "Admin" and enum_text(auto.scope) == "Pool",
                  f"autoUser {auto}")
            meta = {m.name: m.value for m in (p.metadata or [])}
            check(meta.get("renderburst-pool") == POOL and meta.get("renderburst-owner"),
                  f"metadata {meta}")
            check(getattr(p, "application_licenses", None) in (None, []), "applicationLicenses set")
            return "vmSize, fixedScale, image, nodeAgentSkuId, taskSlotsPerNode, startTask, metadata"

        step("azure-mgmt-batch: the fields renderburst set", s_fields)

        def s_tags():
            tags = getattr(p, "tags", None)
            check(tags is not None, "this azure-mgmt-batch has no Pool.tags")
            check(tags.get("renderburst-pool") == POOL and tags.get("renderburst-owner")
                  and tags.get("show") == "compat", f"tags {tags}")

        step("azure-mgmt-batch: pool tags", s_tags)

        def s_list():
            names = [x.name for x in batch.pool.list_by_batch_account(RG, ACCOUNT)]
            check(names == [POOL], f"pools {names}")

        step("azure-mgmt-batch: pool.list_by_batch_account shows one pool", s_list)

        def s_status():
            # The status is what the controller saw at its last activation (every second).
            deadline = time.time() + 20
            while True:
                b = http.get(f"{api}/v1/pools/{POOL}", timeout=10).json()["status"]["batch"]
                want = {"dedicated": 2, "spot": 3}
                if b["targets"] == want and b["current"] == want:
                    return
                check(time.time() < deadline, f"status.batch {b}")
                time.sleep(0.5)

        step("renderburst's status agrees", s_status)
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()
        if all(RESULTS):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"# daemon log kept in {tmp}/daemon.log", flush=True)
    passed = sum(RESULTS)
    print(f"{passed} passed, {len(RESULTS) - passed} failed", flush=True)


if __name__ == "__main__":
    main()
    sys.exit(0 if RESULTS and all(RESULTS) else 1)
