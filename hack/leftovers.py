#!/usr/bin/env python3
"""Lists the test namespaces, Leases, cluster roles and bindings, CRDs other than Switchyard's own,
JetStream streams (consumers live in streams) and schema registry keys that exist now but did not
before a test run.

Usage: leftovers.py snapshot FILE   (record what exists)
       leftovers.py check FILE      (print what is new since; exit 1 if anything is)
Needs KUBECONFIG/kubectl and NATS_MONITOR_URL, or NATS_MONITOR_URLS for a NATS cluster (from
target/dev-env/env).
"""
import json
import os
import subprocess
import sys
import urllib.request


def namespaces():
    out = subprocess.run(["kubectl", "get", "namespaces", "-o", "json"],
                         check=True, capture_output=True, text=True).stdout
    return {item["metadata"]["name"] for item in json.loads(out)["items"]}


def leases():
    # Node heartbeats and the control plane's own elections are not the tests' doing.
    out = subprocess.run(["kubectl", "get", "leases", "--all-namespaces", "-o", "json"],
                         check=True, capture_output=True, text=True).stdout
    return {f'{item["metadata"]["namespace"]}/{item["metadata"]["name"]}'
            for item in json.loads(out)["items"]
            if item["metadata"]["namespace"] not in ("kube-node-lease", "kube-system")}


def cluster_scoped(kind):
    out = subprocess.run(["kubectl", "get", kind, "-o", "json"],
                         check=True, capture_output=True, text=True).stdout
    return {item["metadata"]["name"] for item in json.loads(out)["items"]}


def cluster_roles():
    # The chart tests' releases make these; the control plane's exist before any test.
    return {f"ClusterRole/{n}" for n in cluster_scoped("clusterroles")} | \
        {f"ClusterRoleBinding/{n}" for n in cluster_scoped("clusterrolebindings")}


def crds():
    # Switchyard's own CRDs are installed by the first test and stay, like Helm keeps them.
    return {n for n in cluster_scoped("customresourcedefinitions")
            if n.split(".", 1)[1] != "switchyard.dev"}


# The schema registry's bucket is shared by every namespace, like the account it serves: the
# first test to register a schema creates it. What tests must not leave in it are keys.
REGISTRY_STREAM = "KV_SWITCHYARD_SCHEMAS"


def stream_details():
    # A cluster node lists only the streams it holds a replica of: ask every node and keep, of each
    # stream, the most advanced replica's view (the leader's, unless it just changed).
    urls = os.environ.get("NATS_MONITOR_URLS") or os.environ["NATS_MONITOR_URL"]
    details = {}
    for url in urls.split(","):
        with urllib.request.urlopen(url + "/jsz?accounts=true&streams=true", timeout=10) as response:
            data = json.load(response)
        for account in data.get("account_details") or []:
            for stream in account.get("stream_detail") or []:
                key = (account.get("name"), stream["name"])
                seq = stream.get("state", {}).get("last_seq", 0)
                if key not in details or seq > details[key].get("state", {}).get("last_seq", 0):
                    details[key] = stream
    return list(details.values())


def streams():
    return {stream["name"] for stream in stream_details() if stream["name"] != REGISTRY_STREAM}


def registry_keys():
    return sum(stream.get("state", {}).get("num_subjects", 0)
               for stream in stream_details() if stream["name"] == REGISTRY_STREAM)


def main():
    mode, path = sys.argv[1], sys.argv[2]
    now = {"namespaces": sorted(namespaces()), "leases": sorted(leases()),
           "cluster-roles": sorted(cluster_roles()), "crds": sorted(crds()),
           "streams": sorted(streams())}
    keys = registry_keys()
    if mode == "snapshot":
        with open(path, "w") as f:
            json.dump({**now, "registry_keys": keys}, f)
        return 0
    with open(path) as f:
        before = json.load(f)
    new = {kind: sorted(set(now[kind]) - set(before.get(kind, []))) for kind in now}
    added_keys = keys - before.get("registry_keys", 0)
    if added_keys > 0:
        print(f"left behind by the tests: {added_keys} schema registry key(s) in {REGISTRY_STREAM}",
              file=sys.stderr)
    if not any(new.values()) and added_keys <= 0:
        print("the tests left no namespace, Lease, cluster role, CRD or stream behind")
        return 0
    for kind, names in new.items():
        for name in names:
            print(f"left behind by the tests: {kind[:-1]} {name}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
