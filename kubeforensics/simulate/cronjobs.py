"""CronJob runs as the controllers and the kubelet record them (used by benign jobs and by attacks)."""

from __future__ import annotations

from collections.abc import Callable

from kubeforensics.simulate.clock import NS
from kubeforensics.simulate.cluster import Process, Workload
from kubeforensics.simulate.dataset import MS, Dataset
from kubeforensics.simulate.formats import audit as fa
from kubeforensics.simulate.topology import App, add_app_pod


def cron_run(ds: Dataset, t: int, w: Workload, app: App, work: Callable[[Process, int], None],
             duration: int = 2500 * MS) -> None:
    """One scheduled run of CronJob ``w``: Job, pod, Events, the container's processes (``work``) and completion."""
    cl, rng = ds.cl, ds.rng
    ns = w.namespace
    job = f"{w.name}-{t // NS // 60}"
    job_uid = ds.ids.uuid()
    ds.api(t, user=fa.sa_user(cl.sa("kube-system", "cronjob-controller")), verb="create", code=201,
           uri=f"/apis/batch/v1/namespaces/{ns}/jobs", ip=cl.control_plane.ip, ua=fa.UA_KCM,
           ref=fa.ref("jobs", ns, job, api_group="batch"))
    ds.event(t, "CronJob", ns, w.name, w.uid, "SuccessfulCreate", f"Created job {job}",
             component="cronjob-controller", api_version="batch/v1")
    jw = Workload("Job", ns, job, job_uid, {"job-name": job}, w.sa, t, spec_extra={"app": app})
    pod = add_app_pod(cl, ds.ids, app, jw, rng.choice(cl.workers), 0, t + 50 * MS, flags="execve rootcwd clone")
    pod.owner_kind, pod.owner_name, pod.owner_uid = "Job", job, job_uid
    pod.name = f"{job}-{ds.ids.suffix()}"
    pod.labels = {"batch.kubernetes.io/job-name": job, "job-name": job}
    ds.api(t + 50 * MS, user=fa.sa_user(cl.sa("kube-system", "job-controller")), verb="create", code=201,
           uri=f"/api/v1/namespaces/{ns}/pods", ip=cl.control_plane.ip, ua=fa.UA_KCM, ref=fa.ref("pods", ns, pod.name))
    ds.event(t + 50 * MS, "Job", ns, job, job_uid, "SuccessfulCreate", f"Created pod: {pod.name}",
             component="job-controller", api_version="batch/v1")
    start = ds.start_pod(t + 50 * MS, pod)
    main = pod.containers[0].init
    shim = pod.containers[0].shim
    assert main is not None and shim is not None
    work(main, start)
    ds.exit(main, start + duration)
    ds.exit(shim, start + duration + 100 * MS)
    ds.event(start + duration + 1500 * MS, "Job", ns, job, job_uid, "Completed", "Job completed",
             component="job-controller", api_version="batch/v1")
    ds.event(start + duration + 2500 * MS, "CronJob", ns, w.name, w.uid, "SawCompletedJob",
             f"Saw completed job: {job}, status: Complete", component="cronjob-controller", api_version="batch/v1")
    pod.deleted_ns = start + duration + 500 * MS
