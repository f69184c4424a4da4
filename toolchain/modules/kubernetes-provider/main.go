// Command pulumi-resource-kubernetes is clipper's build of the Pulumi Kubernetes
// provider. It serves the provider from the upstream module. The two JSON files
// are not part of this repository: toolchain/build.sh copies them from the module
// cache into a scratch build directory next to this file (schema.json gets its
// "version" field set) before running `go build` there.
package main

import (
	_ "embed"
	"strings"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
	"helm.sh/helm/v3/pkg/chartutil"
)

// renderKubeVersion is the Kubernetes version charts are rendered for when no cluster is
// there to ask (render mode), set by build.sh from KUBERNETES_VERSION. Without it Helm's
// library default applies (v1.20.0, meant to be replaced by ldflags in Helm's own builds),
// and charts that require a newer cluster, cert-manager's among them, refuse to render.
var renderKubeVersion string

//go:embed schema.json
var schema []byte

//go:embed terraform-mapping.json
var terraformMapping []byte

func main() {
	if parts := strings.Split(strings.TrimPrefix(renderKubeVersion, "v"), "."); len(parts) >= 2 {
		chartutil.DefaultCapabilities.KubeVersion = chartutil.KubeVersion{
			Version: renderKubeVersion, Major: parts[0], Minor: parts[1],
		}
	}
	provider.Serve("kubernetes", version.Version, schema, terraformMapping)
}
