"""The policy pack on real previews: `pulumi preview --policy-pack policies` with each stack's
policy config, as CI runs it. The local stack passes; a bad change is blocked in production."""

POLICY = ["--policy-pack", "policies", "--policy-pack-config"]


def test_local_stack_preview_passes_the_policy_pack(project):
    project.init()
    result = project.ok("preview", "--stack", "local", *POLICY, "policies/config/local.json")
    assert "clipper-policies" in result.output  # the pack ran
    assert "mandatory" not in result.output


def test_production_policy_blocks_an_image_from_an_unapproved_registry(project):
    project.init()
    project.set("local", "apps.backend.image", "docker.io/library/nginx:1.27")
    blocked = project.pulumi("preview", "--stack", "local", *POLICY, "policies/config/production.json")
    assert blocked.returncode != 0
    assert "image-allowed-registry" in blocked.output and "mandatory" in blocked.output
    # the same change under the local (advisory) config is reported, not blocked
    advised = project.ok("preview", "--stack", "local", *POLICY, "policies/config/local.json")
    assert "image-allowed-registry" in advised.output and "advisory" in advised.output
