#!/usr/bin/env python3
"""A Python client of Concierto's admin API, with stubs made by grpcio-tools.

It shows that the API works from another gRPC stack than tonic: it lists and
starts runs, reads one back, lists gates, checks that a bad token is refused
(UNAUTHENTICATED), lists the services through server reflection and calls the
standard health check.

    python3 -m grpc_tools.protoc -I proto --python_out=STUBS \\
        --grpc_python_out=STUBS proto/concierto/v1/*.proto
    python3 tests/python/admin_client.py 127.0.0.1:50051 ADMIN_TOKEN STUBS \\
        [--workflow NAME] [--reviewer-token TOKEN]

Prints one JSON line (what it saw, and `mismatches`); exits 1 if anything did
not match, 2 on bad arguments. Needs grpcio, grpcio-reflection and
grpcio-health-checking (tests/python/requirements.txt).
"""

import argparse
import json
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("addr", help="host:port of the admin API (plain gRPC)")
    ap.add_argument("token", help="a token with the admin role")
    ap.add_argument("stubs", help="folder the generated concierto/v1/*_pb2*.py are in")
    ap.add_argument("--workflow", default="campaign", help="the workflow to start")
    ap.add_argument(
        "--reviewer-token",
        help="a token without the admin role: StartRun must be PERMISSION_DENIED",
    )
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the run")
    args = ap.parse_args()

    sys.path.insert(0, args.stubs)
    import grpc
    from concierto.v1 import admin_pb2, admin_pb2_grpc, run_pb2
    from google.protobuf import descriptor_pool
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    out = {"mismatches": []}

    def expect(what, got, want):
        if got != want:
            out["mismatches"].append(f"{what}: got {got!r}, want {want!r}")

    def auth(token):
        return (("authorization", f"Bearer {token}"),)

    channel = grpc.insecure_channel(args.addr)
    grpc.channel_ready_future(channel).result(timeout=10)
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    ok = auth(args.token)

    # Runs: list, start, read back (the start is stored, then applied by the
    # orchestrator: wait until it knows the run).
    runs = admin.ListRuns(admin_pb2.ListRunsRequest(page_size=10), metadata=ok, timeout=10)
    out["runs_listed"] = len(runs.runs)
    started = admin.StartRun(
        admin_pb2.StartRunRequest(workflow=args.workflow, params={"from": "python"}),
        metadata=ok,
        timeout=10,
    )
    out["run_id"] = started.run_id
    expect("StartRun run_id", bool(started.run_id), True)
    run = None
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            run = admin.GetRun(
                admin_pb2.GetRunRequest(run_id=started.run_id), metadata=ok, timeout=10
            ).run
            break
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
            time.sleep(0.2)
    if run is None:
        out["mismatches"].append(f"GetRun {started.run_id}: not found in {args.timeout}s")
    else:
        out["run_workflow"] = run.workflow
        out["run_state"] = run_pb2.RunState.Name(run.state)
        out["run_requested_by"] = run.requested_by
        expect("GetRun workflow", run.workflow, args.workflow)
        expect("GetRun run_id", run.run_id, started.run_id)
    runs = admin.ListRuns(admin_pb2.ListRunsRequest(page_size=50), metadata=ok, timeout=10)
    expect("ListRuns has the run", started.run_id in [r.run_id for r in runs.runs], True)

    gates = admin.ListGates(admin_pb2.ListGatesRequest(), metadata=ok, timeout=10)
    out["gates_listed"] = len(gates.gates)

    # Refusals.
    def code_of(call):
        try:
            call()
        except grpc.RpcError as e:
            return e.code().name
        return "OK"

    out["bad_token"] = code_of(
        lambda: admin.ListRuns(
            admin_pb2.ListRunsRequest(), metadata=auth("not-a-token"), timeout=10
        )
    )
    expect("a bad token", out["bad_token"], "UNAUTHENTICATED")
    out["no_token"] = code_of(lambda: admin.ListGates(admin_pb2.ListGatesRequest(), timeout=10))
    expect("no token", out["no_token"], "UNAUTHENTICATED")
    if args.reviewer_token:
        out["reviewer_start"] = code_of(
            lambda: admin.StartRun(
                admin_pb2.StartRunRequest(workflow=args.workflow),
                metadata=auth(args.reviewer_token),
                timeout=10,
            )
        )
        expect("StartRun as a reviewer", out["reviewer_start"], "PERMISSION_DENIED")

    # Server reflection: the services, and AdminService resolved with its
    # files (and their imports) from the server alone.
    db = ProtoReflectionDescriptorDatabase(channel)
    services = sorted(db.get_services())
    out["services"] = services
    for want in ("concierto.v1.AdminService", "grpc.health.v1.Health"):
        expect(f"reflection lists {want}", want in services, True)
    expect(
        "reflection lists itself",
        any(s.startswith("grpc.reflection.") and s.endswith(".ServerReflection") for s in services),
        True,
    )
    pool = descriptor_pool.DescriptorPool(db)
    svc = pool.FindServiceByName("concierto.v1.AdminService")
    out["admin_methods"] = len(svc.methods)
    for m in ("ListRuns", "StartRun", "DecideGate", "WatchRuns"):
        expect(f"AdminService has {m}", m in [x.name for x in svc.methods], True)

    # Health.
    health = health_pb2_grpc.HealthStub(channel)
    for name, key in (("", "health"), ("concierto.v1.AdminService", "admin_health")):
        status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status
        out[key] = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
        expect(f"health of {name!r}", out[key], "SERVING")

    out["ok"] = not out["mismatches"]
    print(json.dumps(out, sort_keys=True))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
