"""The Ray Serve deployment options Convoy's settings turn into (no Ray needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from server.ray_serve import DEPLOYMENT_NAME, deployment_options
from tests.support.settings import make_settings


def test_fixed_replicas_on_cpu() -> None:
    options = deployment_options(make_settings(ray_replicas=3, device="cpu"))
    assert options["name"] == DEPLOYMENT_NAME and options["num_replicas"] == 3
    assert "autoscaling_config" not in options
    assert options["ray_actor_options"] == {"num_cpus": 1, "num_gpus": 0.0}
    # Far above Ray's default of 5, so one replica's batcher sees enough requests to batch.
    assert options["max_ongoing_requests"] == 256
    drain = deployment_options(make_settings(drain_timeout_s=45))
    assert drain["graceful_shutdown_timeout_s"] == 45


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_one_gpu_per_replica_on_cuda(device: str) -> None:
    options = deployment_options(make_settings(device=device))
    assert options["ray_actor_options"]["num_gpus"] == 1.0
    shared = deployment_options(make_settings(device=device, ray_num_gpus=0.5))
    assert shared["ray_actor_options"]["num_gpus"] == 0.5


def test_autoscaling_on_ongoing_requests() -> None:
    options = deployment_options(
        make_settings(ray_replicas=1, ray_max_replicas=4, ray_target_ongoing_requests=16)
    )
    assert "num_replicas" not in options
    assert options["autoscaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 4,
        "target_ongoing_requests": 16,
    }


def test_max_replicas_below_min_is_refused() -> None:
    with pytest.raises(ValueError, match="ray_max_replicas must be at least ray_replicas"):
        make_settings(ray_replicas=3, ray_max_replicas=2)


def test_serve_ray_without_ray_installed_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from server.ray_serve import run_on_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(SystemExit, match=r"pip install 'convoy\[ray\]'"):
        run_on_ray(make_settings(ray=True))


def test_shipped_serve_config_is_valid_and_builds() -> None:
    """deploy/ray/convoy-serve.yaml passes Ray's own schema, and its args build the application."""
    schema = pytest.importorskip("ray.serve.schema", reason="Ray is not installed")
    from server.ray_serve import app_builder

    path = Path(__file__).resolve().parents[2] / "deploy" / "ray" / "convoy-serve.yaml"
    config = schema.ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))
    (app,) = config.applications
    assert app.import_path == "server.ray_serve:app_builder"
    assert [d.name for d in app.deployments] == [DEPLOYMENT_NAME]
    built = app_builder(app.args)
    options = deployment_options(make_settings(**app.args))
    assert options["ray_actor_options"]["num_gpus"] == 1.0
    assert type(built).__name__ == "Application"
