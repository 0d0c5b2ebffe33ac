"""Generator replicas on fractional and multi-GPU slots, with logical GPUs (the session cluster's head has two)."""

from __future__ import annotations

import pytest
import ray
from ray import serve

from tests.conftest import SHORT_PROMPTS, start_app

pytestmark = pytest.mark.slow  # two Serve applications of their own, five model replicas: about a minute and a half

SMALL = [
    "llm.max_new_tokens=8",
    SHORT_PROMPTS,
    "serve.ingress.ray_actor_options={num_cpus: 0.1}",
    "serve.retriever.ray_actor_options={num_cpus: 0.1}",
]


@pytest.fixture
def deployed(small_index):
    started = []

    def deploy(overrides):
        started.append(True)
        return start_app(small_index, SMALL + overrides)

    yield deploy
    if started:
        serve.shutdown()


def _generator_replicas() -> dict:
    return dict(serve.status().applications["rag"].deployments["Generator"].replica_states)


def _generator_infos(n_calls: int) -> list[dict]:
    handle = serve.get_deployment_handle("Generator", app_name="rag")
    return [handle.info.remote().result() for _ in range(n_calls)]


def test_four_replicas_share_two_gpus_at_half_each(deployed):
    total = ray.cluster_resources()["GPU"]
    deployed(["serve.generator.num_replicas=4", "serve.generator.ray_actor_options={num_cpus: 0.25, num_gpus: 0.5}"])
    assert _generator_replicas() == {"RUNNING": 4}
    assert ray.available_resources().get("GPU", 0) == total - 2
    infos = _generator_infos(12)
    assert {i["device"] for i in infos} == {"cpu"}  # no CUDA here: every replica fell back to the CPU
    assert all(len(i["gpu_ids"]) == 1 for i in infos)


def test_a_two_gpu_replica_is_placed_whole(deployed):
    deployed(["serve.generator.num_replicas=1", "serve.generator.ray_actor_options={num_cpus: 0.25, num_gpus: 2}"])
    assert _generator_replicas() == {"RUNNING": 1}
    (info,) = _generator_infos(1)
    assert sorted(info["gpu_ids"]) == ["0", "1"]
    assert info["device"] == "cpu"
