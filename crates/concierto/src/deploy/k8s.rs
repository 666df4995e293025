//! The Kubernetes rendering of a [`Plan`]: a 3-node NATS cluster with
//! JetStream (StatefulSet, deploy/nats/nats.conf's users), the services that
//! own data as StatefulSets, the stateless ones as Deployments, one Deployment
//! per agent role with its autoscaler (KEDA `nats-jetstream` on the role's own
//! consumer, or an HPA on `concierto_role_utilization{role}`), the studio as
//! ConfigMaps and one ReadWriteMany volume for the source folders.

use serde_json::{Map, Value, json};

use super::yaml::docs;
use super::{
    AGENT_SECRET_ENV, Autoscale, FileSet, NATS_CONF, Plan, RolePlan, SERVICES, common_env,
    nats_password_vars, password_var,
};

/// Servers of the NATS cluster.
const NATS_REPLICAS: u32 = 3;
/// The volume of the source folders.
const SOURCES_CLAIM: &str = "concierto-sources";
/// Autoscaled roles grow to this many times their replica count.
const MAX_FACTOR: u32 = 5;

fn labels(component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "concierto",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "concierto"
    })
}

fn selector(component: &str) -> Value {
    json!({"app.kubernetes.io/name": "concierto", "app.kubernetes.io/component": component})
}

/// The volume name of a studio ConfigMap (`concierto-studio-agents` → `studio-agents`).
fn set_volume(set: &FileSet) -> String {
    set.name
        .strip_prefix("concierto-")
        .unwrap_or(&set.name)
        .to_string()
}

/// What a Concierto container mounts, and the pod's volumes for it.
struct Mounts {
    mounts: Vec<Value>,
    volumes: Vec<Value>,
}

fn studio_mounts(plan: &Plan, folders: Option<bool>, data: bool) -> Mounts {
    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    for set in &plan.file_sets {
        let v = set_volume(set);
        mounts.push(json!({"name": v, "mountPath": set.mount, "readOnly": true}));
        volumes.push(json!({"name": v, "configMap": {"name": set.name}}));
    }
    if let Some(writable) = folders
        && !plan.folders.is_empty()
    {
        for f in &plan.folders {
            mounts.push(json!({
                "name": "sources",
                "mountPath": f.container_path,
                "subPath": f.name,
                "readOnly": !writable
            }));
        }
        volumes.push(
            json!({"name": "sources", "persistentVolumeClaim": {"claimName": SOURCES_CLAIM}}),
        );
    }
    mounts.push(json!({"name": "tmp", "mountPath": "/tmp"}));
    volumes.push(json!({"name": "tmp", "emptyDir": {}}));
    if data {
        mounts.push(json!({"name": "data", "mountPath": "/var/lib/concierto"}));
    }
    Mounts { mounts, volumes }
}

fn probe(path: &str) -> Value {
    json!({"httpGet": {"path": path, "port": "metrics"}, "periodSeconds": 5})
}

fn liveness() -> Value {
    json!({
        "httpGet": {"path": "/healthz", "port": "metrics"},
        "initialDelaySeconds": 10,
        "periodSeconds": 10,
        "failureThreshold": 6
    })
}

/// A Concierto pod template.
#[allow(clippy::too_many_arguments)]
fn pod(
    component: &str,
    args: Vec<String>,
    user: &str,
    secret_env: &[&str],
    admin_tokens: bool,
    ports: &[(&str, u16)],
    m: Mounts,
) -> Value {
    let mut env = vec![
        json!({"name": "CONCIERTO_NATS_USER", "value": user}),
        json!({"name": "CONCIERTO_NATS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "concierto-nats", "key": password_var(user)}}}),
    ];
    for s in secret_env {
        env.push(json!({"name": s, "valueFrom": {"secretKeyRef": {"name": "concierto-api-keys", "key": s, "optional": true}}}));
    }
    let mut env_from = vec![json!({"configMapRef": {"name": "concierto-env"}})];
    if admin_tokens {
        env_from.push(json!({"secretRef": {"name": "concierto-admin-tokens", "optional": true}}));
    }
    let mut container_ports: Vec<Value> = ports
        .iter()
        .map(|(n, p)| json!({"name": n, "containerPort": p}))
        .collect();
    container_ports.push(json!({"name": "metrics", "containerPort": 9464}));
    let readiness = if component == "admin" {
        json!({"grpc": {"port": 50051}, "periodSeconds": 5})
    } else {
        probe("/readyz")
    };
    json!({
        "metadata": {
            "labels": labels(component),
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9464",
                "prometheus.io/path": "/metrics"
            }
        },
        "spec": {
            "terminationGracePeriodSeconds": 60,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"}
            },
            "containers": [{
                "name": component,
                "image": "concierto:latest",
                "args": args,
                "env": env,
                "envFrom": env_from,
                "ports": container_ports,
                "readinessProbe": readiness,
                "livenessProbe": liveness(),
                "resources": {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "1", "memory": "512Mi"}
                },
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]}
                },
                "volumeMounts": m.mounts
            }],
            "volumes": m.volumes
        }
    })
}

fn service(name: &str, headless: bool, ports: &[(&str, u16)]) -> Value {
    let mut p: Vec<Value> = ports
        .iter()
        .map(|(n, port)| json!({"name": n, "port": port, "targetPort": n}))
        .collect();
    p.push(json!({"name": "metrics", "port": 9464, "targetPort": "metrics"}));
    let mut spec = Map::new();
    if headless {
        spec.insert("clusterIP".into(), "None".into());
    }
    spec.insert("selector".into(), selector(name));
    spec.insert("ports".into(), Value::Array(p));
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels(name)},
        "spec": spec
    })
}

fn env_configmap(plan: &Plan) -> Value {
    let mut data = Map::new();
    for (k, v) in common_env(&plan.studio_file) {
        data.insert(k.into(), v.into());
    }
    data.insert("RUST_LOG".into(), "info".into());
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "concierto-env", "labels": labels("env")},
        "data": data
    })
}

fn services(plan: &Plan) -> Vec<Value> {
    let mut out = vec![env_configmap(plan)];
    for s in SERVICES {
        let m = studio_mounts(plan, s.folders, s.stateful);
        let template = pod(
            s.name,
            vec!["serve".into(), s.name.into()],
            s.name,
            s.secret_env,
            s.admin_tokens,
            s.ports,
            m,
        );
        out.push(service(s.name, s.stateful, s.ports));
        if s.stateful {
            out.push(json!({
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": s.name, "labels": labels(s.name)},
                "spec": {
                    "serviceName": s.name,
                    // One owner of the data (a second replica would diverge).
                    "replicas": 1,
                    "selector": {"matchLabels": selector(s.name)},
                    "template": template,
                    "volumeClaimTemplates": [{
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "5Gi"}}
                        }
                    }]
                }
            }));
        } else {
            out.push(json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": s.name, "labels": labels(s.name)},
                "spec": {
                    "replicas": 2,
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                    "selector": {"matchLabels": selector(s.name)},
                    "template": template
                }
            }));
        }
        out.push(json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": s.name, "labels": labels(s.name)},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(s.name)}}
        }));
    }
    out
}

fn autoscaler(
    r: &RolePlan,
    autoscale: Autoscale,
    namespace: &str,
    tasks_stream: &str,
) -> Option<Value> {
    let target = json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": r.service});
    let max = r.replicas.saturating_mul(MAX_FACTOR).max(MAX_FACTOR);
    match autoscale {
        Autoscale::None => None,
        Autoscale::Keda => Some(json!({
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": r.service, "labels": labels(&r.service)},
            "spec": {
                "scaleTargetRef": target,
                "minReplicaCount": r.replicas,
                "maxReplicaCount": max,
                "pollingInterval": 15,
                "cooldownPeriod": 300,
                "triggers": [{
                    "type": "nats-jetstream",
                    "metadata": {
                        "natsServerMonitoringEndpoint": format!("nats-headless.{namespace}.svc.cluster.local:8222"),
                        "account": "$G",
                        "stream": tasks_stream,
                        "consumer": r.consumer,
                        "lagThreshold": r.max_in_flight.to_string(),
                        "activationLagThreshold": "0"
                    }
                }]
            }
        })),
        Autoscale::Hpa => Some(json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": r.service, "labels": labels(&r.service)},
            "spec": {
                "scaleTargetRef": target,
                "minReplicas": r.replicas,
                "maxReplicas": max,
                "metrics": [{
                    "type": "External",
                    "external": {
                        "metric": {
                            "name": "concierto_role_utilization",
                            "selector": {"matchLabels": {"role": r.name}}
                        },
                        "target": {"type": "Value", "value": "700m"}
                    }
                }],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}
            }
        })),
    }
}

fn roles(plan: &Plan, autoscale: Autoscale, namespace: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for r in &plan.roles {
        let m = studio_mounts(plan, Some(false), false);
        let template = pod(
            &r.service,
            vec!["agent".into(), "--role".into(), r.name.clone()],
            "agent",
            AGENT_SECRET_ENV,
            false,
            &[],
            m,
        );
        out.push(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": r.service, "labels": labels(&r.service)},
            "spec": {
                "replicas": r.replicas,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "selector": {"matchLabels": selector(&r.service)},
                "template": template
            }
        }));
        out.extend(autoscaler(r, autoscale, namespace, &plan.tasks_stream));
    }
    out
}

fn studio(plan: &Plan) -> Vec<Value> {
    plan.file_sets
        .iter()
        .map(|set| {
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": set.name, "labels": labels("studio")},
                "data": set.files
            })
        })
        .collect()
}

fn sources(plan: &Plan) -> Vec<Value> {
    if plan.folders.is_empty() {
        return Vec::new();
    }
    vec![json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": SOURCES_CLAIM, "labels": labels("sources")},
        "spec": {
            // Read by ingest and the agents, written by the feedback router,
            // from pods on any node: a ReadWriteMany storage class (NFS, EFS,
            // CephFS, Azure Files...).
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "10Gi"}}
        }
    })]
}

/// The cluster's own configuration beside the shipped nats.conf (its users).
fn cluster_conf() -> String {
    let routes: Vec<String> = (0..NATS_REPLICAS)
        .map(|i| format!("    nats://nats-{i}.nats-headless:6222"))
        .collect();
    format!(
        "# The 3-node cluster: each server named after its pod, routes to all three.\n\
include ./nats.conf\n\
server_name: $POD_NAME\n\
cluster {{\n  name: concierto\n  port: 6222\n  routes: [\n{}\n  ]\n}}\n",
        routes.join("\n")
    )
}

fn nats() -> Vec<Value> {
    let vars = nats_password_vars();
    let users: Vec<String> = vars.iter().map(|v| (*v).to_string()).collect();
    let script = format!(
        "for v in {}; do\n  eval \"p=\\${{$v:-}}\"\n  if ! printf '%s' \"$p\" | grep -Eq '^[A-Za-z][A-Za-z0-9_-]{{15,}}$'; then\n    echo \"nats: $v is empty or not 16+ letters, digits, - or _ starting with a letter: fill the Secret concierto-nats\" >&2\n    exit 1\n  fi\ndone\nexec nats-server -c /etc/nats/cluster.conf -sd /data\n",
        users.join(" ")
    );
    let nats_labels =
        json!({"app.kubernetes.io/name": "nats", "app.kubernetes.io/part-of": "concierto"});
    let nats_selector = json!({"app.kubernetes.io/name": "nats"});
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "nats-config", "labels": nats_labels},
            "data": {"nats.conf": NATS_CONF, "cluster.conf": cluster_conf()}
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "nats", "labels": nats_labels},
            "spec": {
                "selector": nats_selector,
                "ports": [
                    {"name": "client", "port": 4222, "targetPort": "client"},
                    {"name": "monitor", "port": 8222, "targetPort": "monitor"}
                ]
            }
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "nats-headless", "labels": nats_labels},
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": true,
                "selector": nats_selector,
                "ports": [
                    {"name": "client", "port": 4222, "targetPort": "client"},
                    {"name": "cluster", "port": 6222, "targetPort": "cluster"},
                    {"name": "monitor", "port": 8222, "targetPort": "monitor"}
                ]
            }
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "nats", "labels": nats_labels},
            "spec": {
                "serviceName": "nats-headless",
                "replicas": NATS_REPLICAS,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": nats_selector},
                "template": {
                    "metadata": {"labels": nats_labels},
                    "spec": {
                        "terminationGracePeriodSeconds": 60,
                        "securityContext": {
                            "runAsNonRoot": true,
                            "runAsUser": 1000,
                            "runAsGroup": 1000,
                            "fsGroup": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"}
                        },
                        "containers": [{
                            "name": "nats",
                            "image": "nats:2.10-alpine",
                            "command": ["/bin/sh", "-c"],
                            "args": [script],
                            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                            "envFrom": [{"secretRef": {"name": "concierto-nats"}}],
                            "ports": [
                                {"name": "client", "containerPort": 4222},
                                {"name": "cluster", "containerPort": 6222},
                                {"name": "monitor", "containerPort": 8222}
                            ],
                            "readinessProbe": {"httpGet": {"path": "/healthz?js-enabled-only=true", "port": "monitor"}, "periodSeconds": 5},
                            "livenessProbe": {"httpGet": {"path": "/healthz?js-enabled-only=true", "port": "monitor"}, "initialDelaySeconds": 10, "periodSeconds": 10, "failureThreshold": 6},
                            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
                            "securityContext": {
                                "allowPrivilegeEscalation": false,
                                "readOnlyRootFilesystem": true,
                                "capabilities": {"drop": ["ALL"]}
                            },
                            "volumeMounts": [
                                {"name": "config", "mountPath": "/etc/nats", "readOnly": true},
                                {"name": "data", "mountPath": "/data"}
                            ]
                        }],
                        "volumes": [{"name": "config", "configMap": {"name": "nats-config"}}]
                    }
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}
                }]
            }
        }),
        json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "nats", "labels": nats_labels},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": nats_selector}}
        }),
    ]
}

const HEADER: &str = "\
# Generated by `concierto deploy k8s` from the studio {studio}: do not edit,
# generate again. Apply the folder: kubectl apply -n {namespace} -k <this folder>
# Secrets to create first (kubectl create secret generic ... -n {namespace}):
#   concierto-nats          {users}
#   concierto-api-keys      model API keys, Slack, email, CSRF (optional keys)
#   concierto-admin-tokens  CONCIERTO__REVIEWERS__<ID>__TOKEN_SHA256 (optional)
# The source folders' volume ({claim}) is empty at first: copy the studio's
# content into it (kubectl cp into the ingest pod's {folders}).
";

/// The manifests, one file per part, and their kustomization.
pub(crate) fn render(plan: &Plan, autoscale: Autoscale, namespace: &str) -> Vec<(String, String)> {
    let users: Vec<&str> = nats_password_vars();
    let folders: Vec<&str> = plan
        .folders
        .iter()
        .map(|f| f.container_path.as_str())
        .collect();
    let header = HEADER
        .replace("{studio}", &format!("{:?}", plan.studio_name))
        .replace("{namespace}", namespace)
        .replace("{users}", &users.join(" "))
        .replace("{claim}", SOURCES_CLAIM)
        .replace("{folders}", &folders.join(", "));
    let mut parts: Vec<(&str, Vec<Value>)> = vec![
        ("studio.yaml", studio(plan)),
        ("nats.yaml", nats()),
        ("sources.yaml", sources(plan)),
        ("services.yaml", services(plan)),
        ("roles.yaml", roles(plan, autoscale, namespace)),
    ];
    parts.retain(|(_, docs)| !docs.is_empty());
    let names: Vec<&str> = parts.iter().map(|(n, _)| *n).collect();
    let mut files = vec![(
        "kustomization.yaml".to_string(),
        format!(
            "{header}{}",
            super::yaml::to_yaml(&json!({
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": names
            }))
        ),
    )];
    for (name, d) in parts {
        files.push((name.to_string(), docs(&d)));
    }
    files
}
