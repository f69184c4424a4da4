// Command pulumi-language-python is clipper's own, minimal Pulumi language host for
// Python programs.
//
// Why it exists: the upstream host lives in its own untagged Go module whose
// versions the module proxy we can reach does not serve, so it cannot be built
// here. This host implements only what `pulumi preview/up/destroy/refresh` need:
// it starts `python -u pulumi-language-python-exec ...` (the upstream runner
// script, copied next to this binary by toolchain/build.sh) with the engine's
// settings, exactly the way the runner script expects them. Everything else
// answers "unimplemented", which the engine tolerates.
//
// It also runs Python plugins such as policy packs (RunPlugin).
//
// Python interpreter, in order: the `virtualenv` runtime option of Pulumi.yaml or
// PulumiPolicy.yaml (relative to that file's directory), $VIRTUAL_ENV,
// $PULUMI_PYTHON_CMD, `python3` on PATH.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/version"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The runner script exits with this code after it has already reported the error.
const exitCodeBail = 32

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	engineAddress string
	runner        string
}

func main() {
	// The engine passes flags (e.g. -tracing, -root) before the engine address,
	// which always comes last.
	var engineAddress string
	for _, a := range os.Args[1:] {
		if !strings.HasPrefix(a, "-") {
			engineAddress = a
		}
	}
	self, err := os.Executable()
	if err != nil {
		fail(err)
	}
	runner := filepath.Join(filepath.Dir(self), "pulumi-language-python-exec")
	if _, err := os.Stat(runner); err != nil {
		fail(fmt.Errorf("runner script missing next to the language host: %w", err))
	}
	h := &host{engineAddress: engineAddress, runner: runner}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(s *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(s, h)
			return nil
		},
	})
	if err != nil {
		fail(err)
	}
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "pulumi-language-python: %v\n", err)
	os.Exit(1)
}

// python returns the interpreter and the environment to run it with.
func python(info *pulumirpc.ProgramInfo) (string, []string) {
	env := os.Environ()
	venv := ""
	if info != nil && info.GetOptions() != nil {
		if v, ok := info.GetOptions().GetFields()["virtualenv"]; ok {
			venv = v.GetStringValue()
		}
	}
	if venv != "" {
		if !filepath.IsAbs(venv) && info.GetRootDirectory() != "" {
			venv = filepath.Join(info.GetRootDirectory(), venv)
		}
		bin := filepath.Join(venv, "bin")
		env = append(env, "VIRTUAL_ENV="+venv, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
		return filepath.Join(bin, "python"), env
	}
	if venv := os.Getenv("VIRTUAL_ENV"); venv != "" {
		if _, err := os.Stat(filepath.Join(venv, "bin", "python")); err == nil {
			return filepath.Join(venv, "bin", "python"), env
		}
	}
	if cmd := os.Getenv("PULUMI_PYTHON_CMD"); cmd != "" {
		return cmd, env
	}
	return "python3", env
}

func (h *host) Handshake(_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	if req.GetEngineAddress() != "" {
		h.engineAddress = req.GetEngineAddress()
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version.Version}, nil
}

// Plugins are found on demand (PATH / beside pulumi), so nothing is declared up front.
func (h *host) GetRequiredPlugins(context.Context, *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

func (h *host) GetRequiredPackages(context.Context, *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

func (h *host) GetProgramDependencies(context.Context, *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	return &pulumirpc.GetProgramDependenciesResponse{}, nil
}

func (h *host) About(_ context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	py, _ := python(req.GetInfo())
	return &pulumirpc.AboutResponse{Executable: py}, nil
}

// Dependencies are the caller's business (the repository's virtualenv).
func (h *host) InstallDependencies(_ *pulumirpc.InstallDependenciesRequest,
	s grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse],
) error {
	return s.Send(&pulumirpc.InstallDependenciesResponse{
		Stdout: []byte("clipper language host: dependencies are not installed by pulumi; use the project's virtualenv\n"),
	})
}

func (h *host) RuntimeOptionsPrompts(context.Context, *pulumirpc.RuntimeOptionsRequest,
) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	py, env := python(req.GetInfo())

	args := []string{"-u", h.runner}
	add := func(flag, value string) {
		if value != "" {
			args = append(args, "--"+flag, value)
		}
	}
	add("monitor", req.GetMonitorAddress())
	add("engine", h.engineAddress)
	add("project", req.GetProject())
	add("stack", req.GetStack())
	add("pwd", req.GetPwd())
	add("dry_run", fmt.Sprint(req.GetDryRun()))
	add("parallel", fmt.Sprint(req.GetParallel()))
	add("organization", req.GetOrganization())
	if req.GetInfo() != nil {
		add("root_directory", req.GetInfo().GetRootDirectory())
	}
	program := req.GetProgram()
	if program == "" {
		program = "."
	}
	args = append(args, program)
	args = append(args, req.GetArgs()...)

	config, err := json.Marshal(req.GetConfig())
	if err != nil {
		return nil, err
	}
	secretKeys, err := json.Marshal(req.GetConfigSecretKeys())
	if err != nil {
		return nil, err
	}
	env = append(env, "PULUMI_CONFIG="+string(config), "PULUMI_CONFIG_SECRET_KEYS="+string(secretKeys))

	cmd := exec.CommandContext(ctx, py, args...)
	cmd.Env = env
	cmd.Dir = req.GetPwd()
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			if exitErr.ExitCode() == exitCodeBail {
				return &pulumirpc.RunResponse{Bail: true}, nil
			}
			return &pulumirpc.RunResponse{
				Error: fmt.Sprintf("Program exited with non-zero exit code: %d", exitErr.ExitCode()),
			}, nil
		}
		return &pulumirpc.RunResponse{
			Error: fmt.Sprintf("could not run %s: %v", py, err),
		}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

// RunPlugin runs a Python plugin, such as a policy pack, as `python <plugin dir> <args>`
// (Python runs the directory's __main__.py) and streams its output and exit code back.
func (h *host) RunPlugin(req *pulumirpc.RunPluginRequest,
	s grpc.ServerStreamingServer[pulumirpc.RunPluginResponse],
) error {
	py, env := python(req.GetInfo())
	dir := req.GetInfo().GetProgramDirectory()
	if dir == "" {
		dir = req.GetPwd()
	}
	closer, stdout, stderr, err := rpcutil.MakeRunPluginStreams(s, false)
	if err != nil {
		return err
	}
	defer closer.Close()

	cmd := exec.CommandContext(s.Context(), py, append([]string{dir}, req.GetArgs()...)...)
	cmd.Dir = req.GetPwd()
	cmd.Env = append(env, req.GetEnv()...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	code := 0
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			return fmt.Errorf("could not run %s: %w", py, err)
		}
		code = exitErr.ExitCode()
	}
	if err := closer.Close(); err != nil {
		return err
	}
	return s.Send(&pulumirpc.RunPluginResponse{
		Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: int32(code)},
	})
}
