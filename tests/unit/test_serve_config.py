"""The pure part of the Serve-config actuator: which config is PUT back, what is refused."""

from __future__ import annotations

import copy

import pytest

from prescale.app.actuators.serve_config import (
    ServeConfigActuator,
    ServeConfigRefused,
    deployment_view,
    scaled_config,
)
from prescale.app.core.actions import ActionKind, ResultStatus, ScalingAction
from prescale.app.core.sample import Tier
from prescale.app.edges.serve_instance import app_opted_in


def _dep(n=1, autoscaling=None, options=None):
    return {"status": "HEALTHY", "target_num_replicas": n,
            "deployment_config": {"autoscaling_config": autoscaling,
                                  "ray_actor_options": options or {"num_cpus": 0.1}},
            "replicas": [{"replica_id": f"r{i}", "state": "RUNNING"} for i in range(n)]}


def _details():
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": 8000},
        "applications": {
            "web": {"status": "RUNNING",
                    "deployed_app_config": {
                        "name": "web", "import_path": "m:web", "route_prefix": "/web",
                        "deployments": [{"name": "Model", "num_replicas": 1}]},
                    "deployments": {"Model": _dep(), "Pre": _dep()}},
            "auto": {"status": "RUNNING",
                     "deployed_app_config": {"name": "auto", "import_path": "m:auto",
                                             "deployments": [{"name": "A",
                                                              "num_replicas": "auto"}]},
                     "deployments": {"A": _dep(autoscaling={"min_replicas": 1})}},
            "py": {"status": "RUNNING", "deployed_app_config": None,
                   "deployments": {"P": _dep()}},
        },
    }


def test_opt_in_by_exact_name_or_star():
    assert app_opted_in("web", ["web"]) and app_opted_in("web", ["*"])
    assert not app_opted_in("web", []) and not app_opted_in("web", ["web2", "we"])


def test_only_num_replicas_of_one_deployment_changes_and_the_rest_is_put_back_as_is():
    d = _details()
    kept = copy.deepcopy(d)
    body = scaled_config(d, "web", "Model", {"num_replicas": 2})
    assert d == kept  # the answer read is never modified
    assert body["proxy_location"] == "HeadOnly" and body["http_options"]["port"] == 8000
    apps = {a["name"]: a for a in body["applications"]}
    assert set(apps) == {"web", "auto"}  # a serve.run app is not in a declarative PUT
    assert apps["web"] == {"name": "web", "import_path": "m:web", "route_prefix": "/web",
                           "deployments": [{"name": "Model", "num_replicas": 2}]}
    assert apps["auto"] == d["applications"]["auto"]["deployed_app_config"]
    # a deployment without an entry in the config gets one
    body = scaled_config(d, "web", "Pre", {"num_replicas": 3})
    web = next(a for a in body["applications"] if a["name"] == "web")
    assert web["deployments"] == [{"name": "Model", "num_replicas": 1},
                                  {"name": "Pre", "num_replicas": 3}]
    # a resize merges one key into the current options
    body = scaled_config(d, "web", "Model", {"ray_actor_options": {"num_cpus": 0.2}})
    web = next(a for a in body["applications"] if a["name"] == "web")
    assert web["deployments"][0]["ray_actor_options"] == {"num_cpus": 0.2}


def test_autoscaled_and_python_deployed_apps_are_refused():
    d = _details()
    with pytest.raises(ServeConfigRefused, match="autoscaling_config"):
        scaled_config(d, "auto", "A", {"num_replicas": 2})
    with pytest.raises(ServeConfigRefused, match="serve.run"):
        scaled_config(d, "py", "P", {"num_replicas": 2})
    with pytest.raises(LookupError, match="no deployment 'Nope'"):
        deployment_view(d, "web", "Nope")


class _Api:
    def __init__(self, details):
        self.d, self.puts = details, []

    def details(self):
        return copy.deepcopy(self.d)

    def deploy(self, config):
        self.puts.append(config)


def _act(container, action_id="a1", n=2):
    return ScalingAction(action_id, 100.0, container, Tier.CPU, 1, n, 0.9, 0.5, 10.0, 0.5,
                         "test", kind=ActionKind.SCALE_OUT)


def test_the_actuator_denies_without_writing():
    api = _Api(_details())
    act = ServeConfigActuator(["web", "auto"], api, ready_timeout_s=0.1, poll_s=0.01)
    assert act.containers() == ["auto/A", "web/Model", "web/Pre"]
    r = act.apply(_act("py/P"))
    assert r.status is ResultStatus.DENIED and "not a deployment of an opted-in" in r.reason
    r = act.apply(_act("auto/A", "a2"))
    assert r.status is ResultStatus.DENIED and "autoscaling" in r.reason
    assert api.puts == []
    with pytest.raises(TypeError):
        ServeConfigActuator("web", api)
