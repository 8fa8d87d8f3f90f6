"""The deployment files: linted with hadolint, dclint and shellcheck, and parsed for what the GPU-box
recipe relies on (non-root user, healthchecks, private engine ports, GPU reservations, profiles)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
DCLINT = ROOT / "tests" / "lint" / "node_modules" / ".bin" / "dclint"
OUR_SCRIPTS = ["scripts/check-gateway.sh", "scripts/install-baremetal.sh"]


def run(args):
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    return out.returncode, out.stdout + out.stderr


def tool(name):
    path = VENV_BIN / name
    return str(path) if path.exists() else shutil.which(name)


def test_hadolint_passes():
    code, out = run([tool("hadolint"), "--no-color", "Dockerfile"])
    assert code == 0, out


def test_shellcheck_passes_on_the_shipping_scripts():
    code, out = run([tool("shellcheck"), *OUR_SCRIPTS])
    assert code == 0, out


def test_dclint_passes():
    if not DCLINT.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("dclint is not installed (scripts/test.sh installs it with npm)")
        pytest.skip("dclint not installed: npm is missing")
    code, out = run([str(DCLINT), "docker-compose.gpu.yml"])
    assert code == 0, out


def dockerfile():
    p = DockerfileParser(path=str(ROOT / "Dockerfile"))
    return p.structure, p


def instructions(kind):
    structure, _ = dockerfile()
    return [i["value"] for i in structure if i["instruction"] == kind]


def test_dockerfile_is_multi_stage_and_runs_as_non_root():
    froms = instructions("FROM")
    assert len(froms) >= 2 and " AS " in froms[0].upper(), froms
    users = instructions("USER")
    assert users, "no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users
    # The final stage copies the binary from the build stage.
    assert any(c.startswith("--from=") for c in instructions("COPY")), instructions("COPY")


def test_dockerfile_healthcheck_config_and_litellm_flags():
    health = instructions("HEALTHCHECK")
    assert len(health) == 1 and "/health/liveliness" in health[0], health
    entry = instructions("ENTRYPOINT")
    assert entry == ['["switchyard"]'], entry
    cmd = instructions("CMD")[-1]
    assert "--config" in cmd and "/app/config.yaml" in cmd and "--port" in cmd, cmd
    _, parser = dockerfile()
    env = parser.envs
    # The ledger must land somewhere the non-root user can write.
    assert env.get("SWITCHYARD_DB_PATH", "").startswith("/app/data/"), env
    structure, _ = dockerfile()
    runs = " ".join(i["value"] for i in structure if i["instruction"] == "RUN")
    assert "chown" in runs and "/app/data" in runs, runs


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())


def gpu_capabilities(service):
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    return [(d["driver"], set(d["capabilities"])) for d in devices]


def test_compose_services_and_ports(compose):
    services = compose["services"]
    assert set(services) == {"switchyard", "vllm", "ollama", "postgres"}
    gw = services["switchyard"]
    assert any(str(p).endswith(":4000") for p in gw["ports"]), gw["ports"]
    # Only the gateway is published; the engines and the database stay on the compose network.
    for name in ("vllm", "ollama", "postgres"):
        assert "ports" not in services[name], name
    assert "8000" in [str(p) for p in services["vllm"]["expose"]]
    assert "/app/config.yaml" in " ".join(gw["volumes"])
    assert gw["command"].split() == ["--config", "/app/config.yaml", "--port", "4000"]


def test_compose_gpu_reservations_profiles_and_nvml(compose):
    services = compose["services"]
    for name in ("vllm", "ollama"):
        assert ("nvidia", {"gpu"}) in gpu_capabilities(services[name]), name
    assert services["ollama"]["profiles"] == ["ollama"]
    assert services["vllm"]["profiles"] == ["vllm"]
    gw = services["switchyard"]
    assert "utility" in gw["environment"]["NVIDIA_DRIVER_CAPABILITIES"].split(",")
    assert any(d == "nvidia" and "utility" in caps for d, caps in gpu_capabilities(gw))
    assert "${VLLM_MODEL" in services["vllm"]["command"]


def test_compose_healthchecks_database_and_volume(compose):
    services = compose["services"]
    for name, svc in services.items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert "/health/liveliness" in " ".join(services["switchyard"]["healthcheck"]["test"])
    gw_env = services["switchyard"]["environment"]
    assert gw_env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in gw_env["DATABASE_URL"]
    assert services["switchyard"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    pg_volumes = " ".join(services["postgres"]["volumes"])
    assert "/var/lib/postgresql/data" in pg_volumes
    assert pg_volumes.split(":")[0] in compose["volumes"]


def test_env_example_names_every_variable_compose_requires(compose):
    text = (ROOT / "docker-compose.gpu.yml").read_text()
    example = (ROOT / ".env.example").read_text()
    defined = {line.split("=")[0] for line in example.splitlines() if "=" in line and not line.startswith("#")}
    required = set(re.findall(r"\$\{([A-Z_0-9]+):\?", text))
    assert required and required <= defined, required - defined
    assert "SWITCHYARD_MASTER_KEY" in required
