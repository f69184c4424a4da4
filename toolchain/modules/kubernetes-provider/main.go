// Command pulumi-resource-kubernetes is clipper's build of the Pulumi Kubernetes
// provider. It serves the provider from the upstream module. The two JSON files
// are not part of this repository: toolchain/build.sh copies them from the module
// cache into a scratch build directory next to this file (schema.json gets its
// "version" field set) before running `go build` there.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema.json
var schema []byte

//go:embed terraform-mapping.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, schema, terraformMapping)
}
