# shellcheck shell=bash
# Log a GitLab CI job in to the stack's cloud with the job's OIDC token: no stored keys.
# Sourced by .gitlab-ci.yml's before_script (`source ci/cloud-login.sh`), so that what it exports
# (credential file, role, token file) reaches the job's commands. GitHub Actions uses the clouds'
# own login actions instead (.github/workflows/clipper-stack.yml).
#
# In:  CLIPPER_CLOUD (gke | eks | aks | existing), CLIPPER_ID_TOKEN (the job's `id_tokens:` JWT)
#      gke: GCP_WORKLOAD_IDENTITY_PROVIDER (projects/N/locations/global/workloadIdentityPools/P/providers/Q),
#           GCP_SERVICE_ACCOUNT
#      eks: AWS_ROLE_ARN, AWS_REGION
#      aks: AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_SUBSCRIPTION_ID
# Out: the cloud's CLI logged in, and the environment its SDKs (and so Pulumi's providers) read.

clipper_require() {
  local missing=() tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "cloud-login: ${missing[*]} not found in the job image; set CLIPPER_CI_IMAGE to an image that has them (docs/pipelines.md)" >&2
    return 1
  fi
}

clipper_require_vars() {
  local missing=() name
  for name in "$@"; do
    [ -n "${!name:-}" ] || missing+=("$name")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "cloud-login: set the CI/CD variable(s) ${missing[*]} for this environment (docs/pipelines.md)" >&2
    return 1
  fi
}

clipper_cloud_login() {
  local cloud="${CLIPPER_CLOUD:-}" dir
  if [ "$cloud" = existing ]; then
    echo "cloud-login: CLIPPER_CLOUD=existing: no cloud login (the stack's kubeconfig decides)"
    return 0
  fi
  case "$cloud" in
    gke | eks | aks) ;;
    *)
      echo "cloud-login: CLIPPER_CLOUD is '${cloud}': set it to gke, eks, aks or existing" >&2
      return 1
      ;;
  esac
  if [ -z "${CLIPPER_ID_TOKEN:-}" ]; then
    echo "cloud-login: no CLIPPER_ID_TOKEN: the job needs \`id_tokens: CLIPPER_ID_TOKEN\` (.gitlab-ci.yml)" >&2
    return 1
  fi
  dir="$(mktemp -d)"
  # The token in a file: the AWS SDKs and Google's external-account credentials re-read it.
  (umask 077 && printf '%s' "$CLIPPER_ID_TOKEN" >"$dir/id-token")
  case "$cloud" in
    gke)
      clipper_require_vars GCP_WORKLOAD_IDENTITY_PROVIDER GCP_SERVICE_ACCOUNT || return 1
      clipper_require gcloud gke-gcloud-auth-plugin || return 1
      gcloud iam workload-identity-pools create-cred-config "$GCP_WORKLOAD_IDENTITY_PROVIDER" \
        --service-account="$GCP_SERVICE_ACCOUNT" --credential-source-file="$dir/id-token" \
        --output-file="$dir/gcp-credentials.json" || return 1
      export GOOGLE_APPLICATION_CREDENTIALS="$dir/gcp-credentials.json"
      gcloud auth login --cred-file="$GOOGLE_APPLICATION_CREDENTIALS" --quiet || return 1
      ;;
    eks)
      clipper_require_vars AWS_ROLE_ARN AWS_REGION || return 1
      clipper_require aws || return 1
      export AWS_ROLE_ARN AWS_REGION
      export AWS_WEB_IDENTITY_TOKEN_FILE="$dir/id-token"
      export AWS_ROLE_SESSION_NAME="gitlab-${CI_JOB_ID:-job}"
      aws sts get-caller-identity --output text >/dev/null || return 1
      ;;
    aks)
      clipper_require_vars AZURE_CLIENT_ID AZURE_TENANT_ID AZURE_SUBSCRIPTION_ID || return 1
      clipper_require az kubelogin || return 1
      az login --service-principal --username "$AZURE_CLIENT_ID" --tenant "$AZURE_TENANT_ID" \
        --federated-token "$CLIPPER_ID_TOKEN" --output none || return 1
      az account set --subscription "$AZURE_SUBSCRIPTION_ID" || return 1
      # azure-native (Pulumi's provider) takes the same federated token itself.
      export ARM_USE_OIDC=true ARM_OIDC_TOKEN="$CLIPPER_ID_TOKEN"
      export ARM_CLIENT_ID="$AZURE_CLIENT_ID" ARM_TENANT_ID="$AZURE_TENANT_ID" ARM_SUBSCRIPTION_ID="$AZURE_SUBSCRIPTION_ID"
      ;;
  esac
  echo "cloud-login: logged in to ${cloud} with the job's OIDC token"
}

clipper_cloud_login
