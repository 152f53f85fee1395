#!/usr/bin/env python3
"""A careful hand-written burst with Microsoft's Python SDK: the baseline `renderburst-bench
converge --careful PYTHON` measures renderburst against, in the same run and against the same
simulator.

What a careful engineer writes without renderburst: a client-side token bucket at ARM's
documented subscription write limits (200 burst, 10 a second), fire-and-forget writes (each
`begin_*` sends its request and returns without polling the operation), and one VM list every
2 s to know when the farm is there. No journal, no retries, no restart safety: it is a lower
bar for speed only.

Protocol (so the bench measures with its own clock, from the simulator's census): after the
resource group and network exist the script prints `ready`; then it reads commands from stdin,
one per line: `up` creates N VMs, `down` deallocates them; after each it prints `done` once its
own list shows the farm in that state; end of input ends it.
"""

import argparse
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from azure.identity import ClientSecretCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

ARM_SCOPE = "https://management.azure.com/.default"


class Bucket:
    """ARM's write bucket as documented: 200 burst, 10 a second per subscription."""

    def __init__(self, burst=200.0, per_s=10.0):
        self.burst, self.per_s = burst, per_s
        self.tokens, self.at = burst, time.monotonic()
        self.lock = threading.Lock()

    def take(self):
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_s)
                self.at = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
                wait = (1.0 - self.tokens) / self.per_s
            time.sleep(wait)


def main():
    ap = argparse.ArgumentParser()
    for a in ["url", "ca", "tenant", "client-id", "secret", "subscription", "rg", "location"]:
        ap.add_argument("--" + a, required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--size", default="Standard_D4s_v5")
    args = ap.parse_args()

    common = dict(connection_verify=args.ca)
    cred = ClientSecretCredential(args.tenant, args.client_id, args.secret, authority=args.url,
                                  disable_instance_discovery=True, **common)
    mgmt = dict(base_url=args.url, credential_scopes=[ARM_SCOPE], **common)
    resources = ResourceManagementClient(cred, args.subscription, **mgmt)
    network = NetworkManagementClient(cred, args.subscription, **mgmt)
    compute = ComputeManagementClient(cred, args.subscription, **mgmt)

    rg, loc = args.rg, args.location
    resources.resource_groups.create_or_update(rg, {"location": loc})
    network.virtual_networks.begin_create_or_update(rg, "careful-vnet", {
        "location": loc, "properties": {"addressSpace": {"addressPrefixes": ["10.70.0.0/16"]}}},
    ).result()
    subnet = network.subnets.begin_create_or_update(
        rg, "careful-vnet", "render", {"properties": {"addressPrefix": "10.70.0.0/18"}}).result()
    names = [f"careful-{i:05d}" for i in range(1, args.n + 1)]

    def body(name):
        return {
            "location": loc,
            "properties": {
                "hardwareProfile": {"vmSize": args.size},
                "storageProfile": {
                    "imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts",
                                       "sku": "server", "version": "latest"},
                    "osDisk": {"name": f"{name}-os", "createOption": "FromImage",
                               "deleteOption": "Delete",
                               "managedDisk": {"storageAccountType": "Standard_LRS"}},
                },
                "osProfile": {"computerName": name, "adminUsername": "render",
                              "adminPassword": "Careful-burst-0123456789!"},
                "networkProfile": {
                    "networkApiVersion": "2020-11-01",
                    "networkInterfaceConfigurations": [{
                        "name": f"{name}-nic",
                        "properties": {"primary": True, "deleteOption": "Delete",
                                       "ipConfigurations": [{"name": "ip", "properties": {
                                           "subnet": {"id": subnet.id}}}]},
                    }],
                },
            },
        }

    bucket = Bucket()
    pool = ThreadPoolExecutor(max_workers=32)

    def fire(write):
        def one(name):
            bucket.take()
            write(name)
        list(pool.map(one, names))

    def wait_listed(done):
        while True:
            vms = list(compute.virtual_machines.list_all(status_only="true"))
            if done(vms):
                return
            time.sleep(2.0)

    def power(vm):
        iv = vm.instance_view
        for s in (iv.statuses if iv and iv.statuses else []):
            if s.code and s.code.startswith("PowerState/"):
                return s.code.split("/", 1)[1]
        return None

    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "up":
            fire(lambda n: compute.virtual_machines.begin_create_or_update(
                rg, n, body(n), polling=False))
            wait_listed(lambda vms: sum(power(v) == "running" for v in vms) >= args.n)
        elif cmd == "down":
            fire(lambda n: compute.virtual_machines.begin_deallocate(rg, n, polling=False))
            wait_listed(lambda vms: sum(power(v) == "deallocated" for v in vms) >= args.n)
        else:
            continue
        print("done", flush=True)


if __name__ == "__main__":
    main()
