"""The Clipper platform: one screen of wiring from validated config to components."""
import sys
from pathlib import Path

# Pulumi runs this folder as the program; the components live beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi  # noqa: E402

from components.app import AppDeployment, AppDeploymentArgs  # noqa: E402
from components.cert_manager import CertManager, CertManagerArgs  # noqa: E402
from components.cluster.base import IdentityPermissions  # noqa: E402
from components.external_secrets import ExternalSecrets, ExternalSecretsArgs  # noqa: E402
from components.ingress import Listener, ingress_controller  # noqa: E402
from components.metrics_server import metrics_server  # noqa: E402
from components.namespace import ExposedApp, NamespaceBaseline, NamespaceBaselineArgs  # noqa: E402
from components.rbac import NamespaceAccess, NamespaceAccessArgs  # noqa: E402
from infra.clusters import cluster_for  # noqa: E402
from infra.config import load_config  # noqa: E402

cfg = load_config()  # fails here, before any resource, on bad config
addons = cfg.addons
cluster = cluster_for(cfg)
in_cluster = pulumi.ResourceOptions(providers=[cluster.provider])

namespaces = {
    name: NamespaceBaseline(
        name,
        NamespaceBaselineArgs(
            name=name,
            settings=settings,
            dns=cfg.network.dns,
            **(
                dict(
                    ingress_namespace=cfg.ingress_namespace,
                    exposed=[ExposedApp(app, app_cfg.port) for app, app_cfg in cfg.apps.items() if app_cfg.host],
                    app_traffic=cfg.network.app_traffic,
                    egress=cfg.network.egress,
                )
                if name == cfg.app_namespace
                else {}
            ),
        ),
        in_cluster,
    )
    for name, settings in cfg.namespaces.items()
}
app_namespace = namespaces[cfg.app_namespace]
after_namespace = pulumi.ResourceOptions.merge(in_cluster, pulumi.ResourceOptions(depends_on=[app_namespace]))
NamespaceAccess("access", NamespaceAccessArgs(namespace=cfg.app_namespace, settings=cfg.rbac), after_namespace)

ingress = ingress_controller(
    cfg.ingress,
    addons.ingress_nginx,
    addons.envoy_gateway,
    [Listener(cfg.app_namespace, app.host, f"{name}-tls") for name, app in cfg.apps.items() if app.host],
    after_namespace,
)
cert_manager = (
    CertManager("cert-manager", CertManagerArgs(addons.cert_manager, ingress_class=ingress.class_name), in_cluster)
    if addons.cert_manager.enabled
    else None
)
secrets = None
if addons.external_secrets.enabled:
    eso_identity = cluster.identity_for(
        addons.external_secrets.namespace,
        "external-secrets",
        IdentityPermissions(secrets=tuple(sorted({r.key for a in cfg.apps.values() for r in a.secret_refs().values()}))),
    )
    secrets = ExternalSecrets(
        "external-secrets",
        ExternalSecretsArgs(
            addons.external_secrets,
            store_provider=cluster.secret_store_provider(eso_identity),
            service_account_annotations=eso_identity.service_account_annotations,
            pod_labels=eso_identity.pod_labels,
        ),
        in_cluster,
    )
if addons.metrics_server.enabled:
    metrics_server(addons.metrics_server, in_cluster)

apps = {
    name: AppDeployment(
        name,
        AppDeploymentArgs(
            name=name,
            namespace=cfg.app_namespace,
            settings=app,
            ingress=ingress,
            certificate_issuer=addons.cert_manager.issuer if cert_manager else None,
            secret_store=secrets.store_name if secrets else None,
        ),
        pulumi.ResourceOptions.merge(
            after_namespace, pulumi.ResourceOptions(depends_on=[c for c in (cert_manager, secrets) if c])
        ),
    )
    for name, app in cfg.apps.items()
}

pulumi.export("cloud", cfg.cloud)
pulumi.export("clusterName", cluster.name)
pulumi.export("region", cluster.region)
pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("namespaces", sorted(namespaces))
pulumi.export("appImages", {name: app.image for name, app in apps.items()})
pulumi.export("appUrls", {name: app.url for name, app in apps.items() if app.url})
