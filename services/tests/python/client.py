"""A client in another language, generated from proto/ with grpcio-tools:
creates a deployment and reads it back through EUCORA's public API.

Usage: client.py GENERATED_DIR ADDRESS. Prints what it read as JSON; exits
non-zero when the server's answers do not say what the API promises.
"""

import json
import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from eucora.v1 import common_pb2, deployment_pb2, deployment_pb2_grpc, risk_pb2  # noqa: E402


def main() -> int:
    with grpc.insecure_channel(sys.argv[2]) as channel:
        deployments = deployment_pb2_grpc.DeploymentServiceStub(channel)
        # The development operator of a --dev-auth server.
        metadata = [("authorization", "Bearer dev-alice")]
        request = deployment_pb2.CreateDeploymentRequest(
            request_id="python-client-1",
            app_name="vlc",
            version="3.0.21",
            connector_type=common_pb2.CONNECTOR_TYPE_INTUNE,
            target_ring=common_pb2.RING_PILOT,
            evidence_pack_id="6f1c1f9e-3d2a-4c4b-9a57-0d8f7c9b1e11",
            evidence=risk_pb2.EvidencePack(
                artifact_sha256="ab" * 32,
                vulnerabilities=risk_pb2.VulnerabilityCounts(),
                rollback_plan_present=True,
                rollback_tested=True,
            ),
        )
        created = deployments.CreateDeployment(request, metadata=metadata).deployment
        again = deployments.CreateDeployment(request, metadata=metadata).deployment
        read = deployments.GetDeployment(
            deployment_pb2.GetDeploymentRequest(deployment_id=created.id), metadata=metadata
        ).deployment
        try:
            deployments.GetDeployment(deployment_pb2.GetDeploymentRequest(deployment_id="not-a-uuid"), metadata=metadata)
            bad_input = "OK"
        except grpc.RpcError as error:
            bad_input = error.code().name
        try:
            deployments.GetDeployment(deployment_pb2.GetDeploymentRequest(deployment_id=created.id))
            anonymous = "OK"
        except grpc.RpcError as error:
            anonymous = error.code().name
    seen = {
        "id": read.id,
        "app_name": read.app_name,
        "version": read.version,
        "status": common_pb2.DeploymentStatus.Name(read.status),
        "current_ring": common_pb2.Ring.Name(read.current_ring),
        "target_ring": common_pb2.Ring.Name(read.target_ring),
        "risk_model_version": read.risk_assessment.model_version,
        "submitter": read.submitter,
        "retry_returned_the_same": again.id == created.id,
        "bad_input": bad_input,
        "anonymous": anonymous,
    }
    print(json.dumps(seen))
    expected = {
        "id": created.id,
        "app_name": "vlc",
        "version": "3.0.21",
        "status": "DEPLOYMENT_STATUS_APPROVED",
        "current_ring": "RING_LAB",
        "target_ring": "RING_PILOT",
        "risk_model_version": 1,
        "submitter": "alice",
        "retry_returned_the_same": True,
        "bad_input": "INVALID_ARGUMENT",
        "anonymous": "UNAUTHENTICATED",
    }
    wrong = {key: (seen[key], value) for key, value in expected.items() if seen[key] != value}
    if wrong:
        print(f"unexpected (seen, expected): {wrong}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
