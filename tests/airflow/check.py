"""Drives a real Sandflow server with the official Airflow client (apache-airflow-client 3.x),
as a team moving from Airflow would: every call below is the client's own, unchanged, and every
answer is checked. Run by host/cli/tests/cli/airflow.rs against a `sandflow standalone` it starts.

Environment: SANDFLOW_URL (http://127.0.0.1:PORT), AIRFLOW_USER, AIRFLOW_PASSWORD (an operator),
SANDFLOW_DAG (a DAG of two tasks in a chain, `first` then `second`, unpaused).
Exits 0 when everything held; otherwise prints what did not and exits 1.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

import airflow_client.client as client
from airflow_client.client.api import dag_api, dag_run_api, monitor_api, task_instance_api, version_api
from airflow_client.client.exceptions import ApiException, NotFoundException, UnauthorizedException
from airflow_client.client.models import (
    ClearTaskInstancesBody,
    ClearTaskInstancesBodyTaskIdsInner,
    DAGPatchBody,
    PatchTaskInstanceBody,
    TriggerDAGRunPostBody,
)

BASE = os.environ["SANDFLOW_URL"].rstrip("/")
DAG = os.environ.get("SANDFLOW_DAG", "chain")


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def token(username, password):
    body = json.dumps({"username": username, "password": password}).encode()
    request = urllib.request.Request(
        f"{BASE}/auth/token", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request) as response:
        check(response.status == 201, "POST /auth/token answers 201")
        return json.load(response)["access_token"]


def wait_for(runs, run_id, states=("success", "failed")):
    deadline = time.time() + 60
    while time.time() < deadline:
        run = runs.get_dag_run(DAG, run_id)
        if run.state.value in states:
            return run
        time.sleep(0.2)
    check(False, f"run {run_id} ended within 60 s")


def main():
    # A wrong password: 401 with Airflow's {"detail"}.
    try:
        token(os.environ["AIRFLOW_USER"], "not the password")
        check(False, "a wrong password is refused")
    except urllib.error.HTTPError as e:
        check(e.code == 401 and "detail" in json.load(e), "a wrong password: 401 {detail}")
    config = client.Configuration(host=BASE, access_token=token(os.environ["AIRFLOW_USER"], os.environ["AIRFLOW_PASSWORD"]))
    with client.ApiClient(config) as api:
        health = monitor_api.MonitorApi(api).get_health()
        check(health.metadatabase.status == "healthy", "get_health: the metadatabase is healthy")
        check(bool(version_api.VersionApi(api).get_version().version), "get_version answers a version")

        dags = dag_api.DAGApi(api)
        listed = dags.get_dags(limit=100)
        check(DAG in [d.dag_id for d in listed.dags] and listed.total_entries >= 1, "get_dags lists the DAG")
        dag = dags.get_dag(DAG)
        check(dag.dag_id == DAG and dag.is_paused is False, "get_dag: unpaused")
        paused = dags.patch_dag(DAG, DAGPatchBody(is_paused=True), update_mask=["is_paused"])
        check(paused is not None and paused.is_paused is True, "patch_dag pauses (update_mask=is_paused)")
        check(dags.get_dag(DAG).is_paused is True, "the pause holds")
        dags.patch_dag(DAG, DAGPatchBody(is_paused=False), update_mask=["is_paused"])
        try:
            dags.get_dag("no_such_dag")
            check(False, "an unknown DAG is refused")
        except NotFoundException as e:
            check(e.status == 404 and "detail" in json.loads(e.body), "get_dag of an unknown DAG: 404 {detail}")

        runs = dag_run_api.DagRunApi(api)
        triggered = runs.trigger_dag_run(
            DAG, TriggerDAGRunPostBody(conf={"customers": ["acme"], "n": 2}, note="from the Airflow client", logical_date=None)
        )
        check(triggered is not None, "trigger_dag_run answers a DAGRunResponse (status 200)")
        check(triggered.conf == {"customers": ["acme"], "n": 2}, "the run's conf is the object sent")
        check(triggered.note == "from the Airflow client", "the run's note")
        check(triggered.run_type.value == "manual" and triggered.triggering_user_name == os.environ["AIRFLOW_USER"], "a manual run, by the user")
        run_id = triggered.dag_run_id
        ended = wait_for(runs, run_id)
        check(ended.state.value == "success", f"the run {run_id} succeeds")
        check(ended.dag_versions and ended.dag_versions[0].version_number >= 1, "the run names its DAG version")
        of_dag = runs.get_dag_runs(DAG, limit=10)
        check(run_id in [r.dag_run_id for r in of_dag.dag_runs], "get_dag_runs lists the run")
        everywhere = runs.get_dag_runs("~", limit=10)
        check(run_id in [r.dag_run_id for r in everywhere.dag_runs], "get_dag_runs('~') lists it too")
        check(runs.get_dag_runs(DAG, state=["failed"]).total_entries == 0, "no failed runs")

        instances = task_instance_api.TaskInstanceApi(api)
        tis = instances.get_task_instances(DAG, run_id)
        names = sorted(t.task_id for t in tis.task_instances)
        check(names == ["first", "second"], f"get_task_instances: {names}")
        check(all(t.state.value == "success" for t in tis.task_instances), "every instance succeeded")
        check(all(isinstance(uuid.UUID(str(t.id)), uuid.UUID) for t in tis.task_instances), "ids are UUIDs")
        first = instances.get_task_instance(DAG, run_id, "first")
        check(first.try_number == 1, "get_task_instance: one try")
        log = instances.get_log(DAG, run_id, "first", 1)
        lines = log.content.actual_instance if hasattr(log.content, "actual_instance") else log.content
        check(isinstance(lines, list), "get_log answers the log's lines")

        # Clearing: the client sends dry_run=true and only_failed=true by default.
        second = [ClearTaskInstancesBodyTaskIdsInner("second")]
        none_failed = instances.post_clear_task_instances(DAG, ClearTaskInstancesBody(dag_run_id=run_id, task_ids=second))
        check(none_failed.task_instances == [], "only_failed (the default): nothing failed, nothing to clear")
        dry = instances.post_clear_task_instances(
            DAG, ClearTaskInstancesBody(dag_run_id=run_id, task_ids=second, only_failed=False)
        )
        check([t.task_id for t in dry.task_instances] == ["second"], "a dry-run clear names what it would clear")
        check(runs.get_dag_run(DAG, run_id).state.value == "success", "and clears nothing")
        done = instances.post_clear_task_instances(
            DAG, ClearTaskInstancesBody(dag_run_id=run_id, task_ids=second, only_failed=False, dry_run=False)
        )
        check([t.task_id for t in done.task_instances] == ["second"], "a clear answers what it cleared")
        rerun = wait_for(runs, run_id)
        check(rerun.state.value == "success", "the cleared task ran again")
        check(instances.get_task_instance(DAG, run_id, "second").try_number == 2, "as a second try")

        # Setting a state by hand.
        marked = instances.patch_task_instance(DAG, run_id, "second", PatchTaskInstanceBody(new_state="failed"))
        check(marked.task_instances[0].state.value == "failed", "patch_task_instance sets failed")
        check(instances.get_task_instance(DAG, run_id, "second").state.value == "failed", "and it holds")

    # A client without a valid token.
    bad = client.Configuration(host=BASE, access_token="sf_not-a-token")
    with client.ApiClient(bad) as api:
        try:
            dag_api.DAGApi(api).get_dags()
            check(False, "a bad token is refused")
        except UnauthorizedException as e:
            check(e.status == 401, "a bad token: 401")
    print("every check held")


if __name__ == "__main__":
    try:
        main()
    except ApiException as e:
        print(f"FAILED: the server answered {e.status}: {e.body}", file=sys.stderr)
        sys.exit(1)
