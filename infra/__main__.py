"""The Clipper platform: one screen of wiring from validated config to components."""
import os
import sys
from pathlib import Path

# Pulumi runs this folder as the program; the components live beside it, and paths in stack
# files (kubeconfig, renderDir) are relative to the project root, like the stack files.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
os.chdir(PROJECT_ROOT)

import pulumi  # noqa: E402

from components.addons.backups import Backups, BackupsArgs, location_storage  # noqa: E402
from components.addons.cert_manager import CertManager, CertManagerArgs  # noqa: E402
from components.addons.cluster_autoscaler import ClusterAutoscaler, ClusterAutoscalerArgs  # noqa: E402
from components.addons.external_secrets import ExternalSecrets, ExternalSecretsArgs  # noqa: E402
from components.addons.helm_addon import ClusterNetwork  # noqa: E402
from components.addons.ingress import IngressArgs, Listener, acme_http01_solver, ingress_controller  # noqa: E402
from components.addons.metrics_server import metrics_server  # noqa: E402
from components.addons.monitoring import Monitoring, MonitoringArgs, addon_targets  # noqa: E402
from components.addons.reloader import reloader  # noqa: E402
from components.app import AppDeployment, AppDeploymentArgs  # noqa: E402
from components.cluster.base import IdentityPermissions  # noqa: E402
from components.dns import HostRecords  # noqa: E402
from components.namespace import ExposedApp, NamespaceBaseline, NamespaceBaselineArgs  # noqa: E402
from components.rbac import NamespaceAccess, NamespaceAccessArgs  # noqa: E402
from infra.clusters import cluster_for  # noqa: E402
from infra.config import load_config  # noqa: E402

cfg = load_config()  # fails here, before any resource, on bad config
addons, public_apps = cfg.addons, {name: app for name, app in cfg.apps.items() if app.host}

# --- the cluster, and everything inside it through its provider ------------------------------
cluster = cluster_for(cfg)
in_cluster = pulumi.ResourceOptions(providers=[cluster.provider])
dns_zone = cluster.dns_zone(cfg.dns) if cfg.dns else None

app_network = dict(
    ingress_namespace=cfg.ingress_namespace,
    ingress_pods=cfg.ingress_pods,
    exposed=[ExposedApp(name, app.port) for name, app in public_apps.items()],
    app_traffic=cfg.network.app_traffic,
    egress=cfg.network.egress,
    acme_http01=addons.cert_manager.enabled and addons.cert_manager.solver == "http01",
)
namespaces = {
    name: NamespaceBaseline(
        name,
        NamespaceBaselineArgs(name, settings, cfg.network.dns, **(app_network if name == cfg.app_namespace else {})),
        in_cluster,
    )
    for name, settings in cfg.namespaces.items()
}
after_namespace = pulumi.ResourceOptions.merge(
    in_cluster, pulumi.ResourceOptions(depends_on=namespaces[cfg.app_namespace].guard_rails)
)
NamespaceAccess("access", NamespaceAccessArgs(namespace=cfg.app_namespace, settings=cfg.rbac), after_namespace)

# --- add-ons: cert-manager first, it issues the ingress controllers' own certificates -------------
network = ClusterNetwork.around(cluster, cfg.network.dns, cfg.network.control_plane_cidrs)
listeners = [Listener(cfg.app_namespace, app.host, f"{name}-tls") for name, app in public_apps.items()]
identities = {}  # in-cluster workloads' cloud identities
cert_manager = None
if addons.cert_manager.enabled:
    dns01 = addons.cert_manager.solver == "dns01"  # config guarantees a zone for it
    if dns01:
        identities["cert-manager"] = cluster.identity_for(
            addons.cert_manager.namespace, "cert-manager", IdentityPermissions(dns_zones=(dns_zone.ref,))
        )
    cert_manager = CertManager(
        "cert-manager",
        CertManagerArgs(
            addons.cert_manager,
            network,
            solver=dns_zone.acme_dns01_solver(identities["cert-manager"]) if dns01 else acme_http01_solver(
                cfg.ingress, addons.ingress_nginx, listeners
            ),
            gateway_api=cfg.ingress.controller == "gateway",
            identity=identities.get("cert-manager"),
        ),
        in_cluster,
    )
ingress = ingress_controller(
    addons.ingress_nginx,
    addons.envoy_gateway,
    IngressArgs(
        settings=cfg.ingress,
        network=network,
        cloud=cfg.cloud,
        app_namespace=cfg.app_namespace,
        app_ports=tuple(app.port for app in public_apps.values()),
        listeners=listeners,
        cert_manager=cert_manager is not None,
    ),
    pulumi.ResourceOptions.merge(after_namespace, pulumi.ResourceOptions(depends_on=[cert_manager] if cert_manager else [])),
)
secrets = None
if addons.external_secrets.enabled:
    secret_keys = sorted({ref.key for app in cfg.apps.values() for ref in app.secret_refs().values()})
    identities["external-secrets"] = cluster.identity_for(
        addons.external_secrets.namespace, "external-secrets", IdentityPermissions(secrets=tuple(secret_keys))
    )
    secrets = ExternalSecrets(
        "external-secrets",
        ExternalSecretsArgs(
            addons.external_secrets,
            store_provider=cluster.secret_store_provider(identities["external-secrets"]),
            identity=identities["external-secrets"],
            network=network,
        ),
        in_cluster,
    )
node_autoscaler = cluster.node_autoscaler() if addons.cluster_autoscaler.enabled is not False else None
if node_autoscaler is not None:  # EKS: node groups scale (docs/clouds.md)
    identities["cluster-autoscaler"] = node_autoscaler.identity
    ClusterAutoscaler("cluster-autoscaler", ClusterAutoscalerArgs(addons.cluster_autoscaler, node_autoscaler, network), in_cluster)
if addons.metrics_server.installed_on(cfg.cloud):
    metrics_server(addons.metrics_server, network, in_cluster)
reloads = addons.reloader.installed_with(addons.external_secrets.enabled)
if reloads:  # apps roll when their synced Secret changes
    reloader(addons.reloader, network, cfg.app_namespace, in_cluster)
backups = None
if addons.backups.enabled:  # Velero, into the cloud's bucket as its own identity (docs/operations.md#backups)
    b = addons.backups
    storage = location_storage(b.location, b.plugin_version) if b.location else cluster.backup_storage()
    identities["velero"] = cluster.identity_for(b.namespace, "velero", IdentityPermissions(buckets=(storage.ref,)))
    backups = Backups(
        "velero", BackupsArgs(b, storage, identities["velero"], network, cfg.app_namespace), after_namespace
    )
if addons.monitoring.enabled:  # Prometheus, the platform's alerts, scrape targets (docs/operations.md#monitoring)
    Monitoring(
        "monitoring",
        MonitoringArgs(
            addons.monitoring,
            network,
            cfg.app_namespace,
            apps={name: app.port for name, app in cfg.apps.items()},
            ingress_controller=cfg.ingress.controller,
            addon_targets=addon_targets(cfg.installed_addons()),
            backup_rpo=addons.backups.rpo if backups else None,  # one RPO: the one the schedules are checked against
        ),
        pulumi.ResourceOptions.merge(after_namespace, pulumi.ResourceOptions(depends_on=[c for c in (cert_manager, secrets, ingress) if c])),
    )

# --- apps ----------------------------------------------------------------------------------------
apps = {
    name: AppDeployment(
        name,
        AppDeploymentArgs(
            name=name,
            namespace=cfg.app_namespace,
            settings=app,
            ingress=ingress,
            certificate_issuer=addons.cert_manager.issuer if cert_manager else None,
            secrets=secrets.sync if secrets else None,
            reload_on_secret_change=reloads,
        ),
        pulumi.ResourceOptions.merge(
            after_namespace, pulumi.ResourceOptions(depends_on=[c for c in (cert_manager, secrets) if c])
        ),
    )
    for name, app in cfg.apps.items()
}

# --- public DNS for the app hosts ------------------------------------------------------------------
ingress_address = None
if dns_zone is not None:
    ingress_address = pulumi.Output.from_input(cfg.dns.target) if cfg.dns.target else ingress.address()
    if ingress_address is None:
        pulumi.log.warn("dns: no records for app hosts: the ingress address cannot be read; set dns.target")
    else:
        HostRecords("app-hosts", dns_zone, [app.host for app in public_apps.values()], ingress_address, cfg.dns.ttl)

pulumi.export("cloud", cfg.cloud)
pulumi.export("clusterName", cluster.name)
pulumi.export("region", cluster.region)
pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("clusterEndpoint", cluster.endpoint)
pulumi.export("oidcIssuer", cluster.oidc_issuer)
pulumi.export("identities", {name: i.principal for name, i in identities.items() if i.principal is not None})
if ingress_address is not None:
    pulumi.export("ingressAddress", ingress_address)
pulumi.export("namespaces", sorted(namespaces))
pulumi.export("appImages", {name: app.image for name, app in apps.items()})
pulumi.export("appUrls", {name: app.url for name, app in apps.items() if app.url})
if backups is not None:
    pulumi.export("backupBucket", backups.bucket)
if cfg.notification_webhook:
    pulumi.export("notificationWebhook", pulumi.Output.secret(cfg.notification_webhook))
