"""The API server goes away and comes back under real `dais controller` processes, a leader and a standby, and a
`dais autoscaler`.

While it is away: no process exits (the autoscaler skips its ticks); each controller logs the outage once; the
leader is fenced once its lease cannot be renewed; no status changes (endpoints keep the last state seen); the API
accepts a create, an update and a delete. Once it is back: the leader (the same process, its lease kept) resumes its
watches, applies what changed meanwhile, leaves every object it did not have to change as it was (uids,
resourceVersions, generations), and converges; the standby never wrote; the autoscaler leads on.
"""

from __future__ import annotations

from typing import Any

from core.kube.labels import ENDPOINT_ID
from tests.controller.test_controller_process import LEASE_SECONDS, NS, WAIT, ControllerProcess, Harness
from tests.fixtures.kube import KubeCluster, wait_for

UNREACHABLE = "is unreachable"
BACK = "answers again"


def _fingerprints(harness: Harness, endpoint_id: str) -> dict[str, tuple[str, str]]:
    """``Kind/name`` → (uid, what changes with every write: the resourceVersion, or a Deployment's generation, as
    its status is the cluster's to write)."""
    found = {}
    for kind in ("Deployment", "Service", "Secret"):
        items, _ = harness.kube.list(kind, harness.namespace, selector=f"{ENDPOINT_ID}={endpoint_id}")
        for item in items:
            meta = item["metadata"]
            found[f"{kind}/{meta['name']}"] = (
                meta["uid"],
                str(meta["generation"] if kind == "Deployment" else meta["resourceVersion"]),
            )
    return found


def _count(process: ControllerProcess, text: str) -> int:
    return process.log.read_text(errors="replace").count(text)


def _status(harness: Harness, name: str) -> dict[str, Any]:
    status: dict[str, Any] = harness.api.get(f"/v2/endpoint/{NS}/{name}").json()["status"]
    return {k: status.get(k) for k in ("state", "message", "readyReplica", "targetReplica", "url")}


def test_an_apiserver_outage_is_waited_out_and_what_changed_meanwhile_converges(
    harness: Harness, kube_cluster: KubeCluster
) -> None:
    leader = harness.start_controller()
    wait_for(lambda: harness.holder() == leader.identity, timeout=WAIT, what="the first controller to lead")
    standby = harness.start_controller()
    autoscaler = harness.start_autoscaler()
    wait_for(lambda: autoscaler.metric("dais_autoscaler_leader") == 1, timeout=WAIT, what="the autoscaler to lead")
    harness.create("kept", secrets={"KEY": "v"})
    harness.create("updated")
    harness.create("deleted")
    wait_for(
        lambda: harness.states() == {"kept": "running", "updated": "running", "deleted": "running"},
        timeout=WAIT,
        what="three endpoints running",
    )
    ids = harness.ids()
    not_ours = harness.kube.create(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "not-ours", "namespace": harness.namespace}}
    )["metadata"]
    kept = _fingerprints(harness, ids["kept"])
    assert sorted(k.split("/")[0] for k in kept) == ["Deployment", "Secret", "Service"]
    kept_status = _status(harness, "kept")

    kube_cluster.stop_apiserver()
    try:
        wait_for(
            lambda: leader.metric("dais_controller_leader") == 0,
            timeout=LEASE_SECONDS * 5,
            what="the leader to be fenced, its lease not renewed",
        )
        harness.create("created")  # the API does not need the cluster to take changes
        response = harness.api.put(f"/v2/endpoint/{NS}/updated", json={"model": {"env": {"MODE": "slow"}}})
        assert response.status_code == 200, response.text
        assert harness.api.delete(f"/v2/endpoint/{NS}/deleted").status_code == 200
        wait_for(
            lambda: leader.metric("dais_controller_kube_requests_total", code="0") >= 20,
            timeout=WAIT,
            what="the leader to find the API server away, again and again",
        )
        wait_for(
            lambda: autoscaler.metric("dais_autoscaler_ticks_total", result="not_leader") >= 2,
            timeout=LEASE_SECONDS * 5,
            what="the autoscaler to skip ticks while its lease cannot be renewed",
        )
        for process in (leader, standby, autoscaler):
            assert process.popen.poll() is None, process.tail()
            assert _count(process, UNREACHABLE) == 1, process.tail()  # once, not once per attempt
        assert _count(leader, "could not renew the lease") == 1, leader.tail()
        assert _status(harness, "kept") == kept_status  # the last state seen, not one guessed in the dark
        assert _status(harness, "created")["state"] == "pending"
        assert _status(harness, "updated")["state"] == "updating"
    finally:
        kube_cluster.start_apiserver()

    def converged() -> bool:
        owned = harness.owned()
        live = harness.ids()
        return (
            set(live) == {"kept", "updated", "created"}
            and harness.all_ids() == set(live.values())  # the deleted row finalized
            and {k: sorted(v) for k, v in owned.items()}
            == {
                ids["kept"]: ["Deployment", "Secret", "Service"],
                ids["updated"]: ["Deployment", "Service"],
                live["created"]: ["Deployment", "Service"],
            }
            and harness.states() == {"kept": "running", "updated": "running", "created": "running"}
        )

    wait_for(converged, timeout=WAIT, what="convergence once the API server is back")
    (deployment,), _ = harness.kube.list("Deployment", harness.namespace, selector=f"{ENDPOINT_ID}={ids['updated']}")
    assert {"name": "MODE", "value": "slow"} in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert _fingerprints(harness, ids["kept"]) == kept  # untouched: not rewritten, not deleted and re-created
    again = harness.kube.get("Secret", harness.namespace, "not-ours")
    assert again is not None
    assert (again["metadata"]["uid"], again["metadata"]["resourceVersion"]) == (
        not_ours["uid"],
        not_ours["resourceVersion"],
    )

    # The same leader, never restarted, leads on: its lease still named it, so nobody led in between.
    assert leader.popen.poll() is None, leader.tail()
    assert harness.holder() == leader.identity
    assert leader.metric("dais_controller_leader") == 1
    assert _count(leader, BACK) == 1, leader.tail()
    assert _count(leader, "acting again") == 1, leader.tail()
    assert "Traceback" not in leader.log.read_text(errors="replace"), leader.tail()
    assert standby.popen.poll() is None, standby.tail()
    # The autoscaler, too, waited the outage out and leads on with its lease, without a restart.
    assert autoscaler.popen.poll() is None, autoscaler.tail()
    wait_for(lambda: autoscaler.metric("dais_autoscaler_leader") == 1, timeout=WAIT, what="the autoscaler to lead")
    assert harness.holder("autoscaler") == autoscaler.identity
    assert standby.metric("dais_controller_kube_writes_total") == 0  # never two controllers acting at once
    assert standby.metric("dais_controller_status_writes_total") == 0


def test_a_controller_started_while_the_apiserver_is_away_waits_for_it(
    harness: Harness, kube_cluster: KubeCluster
) -> None:
    kube_cluster.stop_apiserver()
    try:
        controller = harness.start_controller()  # alive (/healthz) although it cannot reach the cluster
        wait_for(lambda: _count(controller, UNREACHABLE) == 1, timeout=WAIT, what="the controller to find it away")
        assert controller.popen.poll() is None, controller.tail()
    finally:
        kube_cluster.start_apiserver()
    wait_for(lambda: harness.holder() == controller.identity, timeout=WAIT, what="the controller to lead")
    harness.create("late")
    wait_for(lambda: harness.states() == {"late": "running"}, timeout=WAIT, what="an endpoint applied")
    assert _count(controller, BACK) == 1, controller.tail()
