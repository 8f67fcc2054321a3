package deploy

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/userattrs/userattrs"
)

const chart = "deploy/helm/userattrs"

// valueSets are the configurations the chart is checked in: each store,
// and every optional part on.
var valueSets = map[string][]string{
	"sqlite": {"oidc.issuer=https://sso.example.com/realms/main", "oidc.audience=userattrs"},
	"sqlite-everything": {"oidc.issuer=https://sso.example.com/realms/main", "serviceMonitor.enabled=true",
		"prometheusRule.enabled=true", "dashboard.enabled=true", "networkPolicy.enabled=true",
		"events.webhookUrl=https://hooks.example.com/userattrs", "secrets.webhookSecret=whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0",
		"tracing.otlpEndpoint=http://otel-collector:4318"},
	"postgres": {"store=postgres", "replicaCount=3", "secrets.databaseUrl=postgres://userattrs:pw-in-secret@db:5432/userattrs",
		"oidc.issuer=https://sso.example.com/realms/main", "autoscaling.enabled=true", "networkPolicy.enabled=true",
		"reconcile.schedule=17 3 * * *", "keycloak.url=https://sso.example.com", "keycloak.realm=main", "keycloak.clientId=userattrs",
		"secrets.keycloakClientSecret=kc-secret-in-secret", "events.natsUrl=nats://nats:4222"},
	"postgres-migration-job": {"store=postgres", "replicaCount=2", "existingSecret=userattrs-credentials", "migration.job=true",
		"serviceMonitor.enabled=true", "prometheusRule.enabled=true"},
	"keycloak": {"store=keycloak", "replicaCount=2", "keycloak.url=https://sso.example.com", "keycloak.realm=main",
		"keycloak.clientId=userattrs", "secrets.keycloakClientSecret=kc-secret-in-secret",
		"oidc.issuer=https://sso.example.com/realms/main",
		"attributePolicy.attributes[0].match=premium", "attributePolicy.attributes[0].write=null",
		"attributePolicy.attributes[1].match=plan", "attributePolicy.attributes[1].enum={free,pro}"},
}

func helmTemplate(t *testing.T, set []string) (string, error) {
	t.Helper()
	args := []string{"template", "ua", chart, "--namespace", "apps"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return runStdout(tools(t)["OPS_HELM"], args...)
}

// object is a rendered manifest, as generic JSON.
type object map[string]any

func (o object) path(keys ...any) any {
	var v any = map[string]any(o)
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

func manifests(t *testing.T, rendered string) map[string]object {
	t.Helper()
	objs := map[string]object{}
	for _, doc := range strings.Split(rendered, "\n---") {
		var o object
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("a rendered document does not parse: %v\n%s", err, doc)
		}
		if o == nil {
			continue
		}
		objs[o["kind"].(string)] = o
	}
	return objs
}

// The chart lints, renders valid Kubernetes objects in every value set
// (kubeconform, strict, offline schemas of Kubernetes 1.35 and of
// prometheus-operator's CRDs), and its schema refuses what makes no sense.
func TestChart(t *testing.T) {
	tl := tools(t)
	for name, set := range valueSets {
		args := []string{"lint", "--strict", chart}
		for _, s := range set {
			args = append(args, "--set", s)
		}
		if out, err := runErr(tl["OPS_HELM"], args...); err != nil {
			t.Errorf("helm lint (%s): %v\n%s", name, err, out)
		}
	}
	for name, set := range valueSets {
		t.Run(name, func(t *testing.T) {
			rendered, err := helmTemplate(t, set)
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, rendered)
			}
			file := filepath.Join(t.TempDir(), "rendered.yaml")
			writeFile(t, file, rendered)
			out := run(t, tl["OPS_KUBECONFORM"], "-strict", "-summary",
				"-schema-location", tl["OPS_KUBE_SCHEMAS"]+"/{{ .ResourceKind }}{{ .KindSuffix }}.json",
				"-schema-location", filepath.Join(repoRoot(), "deploy/tools/crd-schemas")+"/{{ .ResourceKind }}{{ .KindSuffix }}.json", file)
			if !strings.Contains(out, "Invalid: 0, Errors: 0, Skipped: 0") {
				t.Fatalf("kubeconform: %s", out)
			}
			checkManifests(t, name, set, manifests(t, rendered))
		})
	}

	for _, refused := range []struct {
		why  string
		set  []string
		want string
	}{
		{"no replicas", []string{"store=postgres", "replicaCount=0", "secrets.databaseUrl=postgres://x"}, "replicaCount"},
		{"an unknown store", []string{"store=mongodb"}, "store"},
		{"SQLite with two replicas", []string{"replicaCount=2"}, "replicaCount"},
		{"SQLite autoscaled", []string{"autoscaling.enabled=true"}, "autoscaling"},
		{"PostgreSQL without its URL", []string{"store=postgres"}, "databaseUrl"},
		{"a secret among the flags", []string{"extraArgs={--keycloak-client-secret=s3cret}"}, "extraArgs"},
		{"a migration Job on SQLite", []string{"migration.job=true", "existingSecret=s"}, "migration.job"},
		{"a reconcile CronJob on SQLite", []string{"reconcile.schedule=@daily", "existingSecret=s"}, "reconcile.schedule"},
		{"an unknown value", []string{"replicas=3"}, "replicas"},
	} {
		out, err := helmTemplate(t, refused.set)
		if err == nil || !strings.Contains(out, refused.want) {
			t.Errorf("%s: helm template %v: want a refusal naming %q, got %v\n%s", refused.why, refused.set, refused.want, err, out)
		}
	}
}

func checkManifests(t *testing.T, name string, set []string, objs map[string]object) {
	t.Helper()
	store := "sqlite"
	for _, s := range set {
		if v, ok := strings.CutPrefix(s, "store="); ok {
			store = v
		}
	}
	var workload object
	if store == "sqlite" {
		workload = objs["StatefulSet"]
		if workload == nil || objs["Deployment"] != nil {
			t.Fatalf("SQLite: want a StatefulSet and no Deployment, got %v", keys(objs))
		}
		if workload.path("spec", "replicas") != float64(1) || workload.path("spec", "volumeClaimTemplates", 0, "metadata", "name") != "data" {
			t.Errorf("SQLite: want one replica with a data volume claim")
		}
		if objs["PodDisruptionBudget"] != nil || objs["HorizontalPodAutoscaler"] != nil {
			t.Errorf("SQLite: a budget or an autoscaler of one pod")
		}
	} else {
		workload = objs["Deployment"]
		if workload == nil || objs["StatefulSet"] != nil {
			t.Fatalf("%s: want a Deployment, got %v", store, keys(objs))
		}
		if objs["PodDisruptionBudget"] == nil {
			t.Errorf("%s: no PodDisruptionBudget", store)
		}
	}
	pod := object(workload.path("spec", "template", "spec").(map[string]any))
	c := object(pod.path("containers", 0).(map[string]any))
	sc := object(c["securityContext"].(map[string]any))
	if sc["readOnlyRootFilesystem"] != true || sc["runAsNonRoot"] != true || sc["allowPrivilegeEscalation"] != false ||
		sc.path("capabilities", "drop", 0) != "ALL" || sc.path("seccompProfile", "type") != "RuntimeDefault" {
		t.Errorf("container security context: %v", sc)
	}
	for _, probe := range []string{"livenessProbe", "readinessProbe", "startupProbe"} {
		if c.path(probe, "httpGet", "path") == nil {
			t.Errorf("no %s", probe)
		}
	}
	if c.path("readinessProbe", "httpGet", "path") != "/health/readiness" {
		t.Errorf("the readiness probe is not /health/readiness")
	}
	// The grace period covers the preStop wait and the drain.
	preStop := c.path("lifecycle", "preStop", "sleep", "seconds").(float64)
	args, _ := json.Marshal(c["args"])
	if preStop != 5 || pod["terminationGracePeriodSeconds"] != float64(5+20+5) ||
		!bytes.Contains(args, []byte(`"--shutdown-timeout=20s"`)) || !bytes.Contains(args, []byte(`"--shutdown-delay=0s"`)) {
		t.Errorf("preStop %v, grace period %v, args %s", preStop, pod["terminationGracePeriodSeconds"], args)
	}
	// Secrets reach the pod only by reference.
	env, _ := json.Marshal(c["env"])
	for _, secret := range []string{"pw-in-secret", "kc-secret-in-secret", "whsec_"} {
		if bytes.Contains(env, []byte(secret)) || bytes.Contains(args, []byte(secret)) {
			t.Errorf("a secret in the pod's env or args: %s %s", env, args)
		}
	}
	if cron := objs["CronJob"]; cron != nil {
		job := object(cron.path("spec", "jobTemplate", "spec", "template", "spec", "containers", 0).(map[string]any))
		args, _ := json.Marshal(job["args"])
		env, _ := json.Marshal(job["env"])
		if !bytes.Contains(args, []byte(`"reconcile","--apply","--max-erasures=1000","--keycloak-url=https://sso.example.com"`)) ||
			!bytes.Contains(args, []byte(`"--events"`)) || !bytes.Contains(env, []byte(`"key":"keycloak-client-secret"`)) ||
			!bytes.Contains(env, []byte(`"key":"database-url"`)) || bytes.Contains(env, []byte("kc-secret-in-secret")) {
			t.Errorf("the reconcile CronJob: args %s, env %s", args, env)
		}
	} else if store == "postgres" && name == "postgres" {
		t.Errorf("no reconcile CronJob with reconcile.schedule")
	}
	if cm := objs["ConfigMap"]; cm != nil && cm.path("data", "attribute-policy.yaml") != nil {
		// The file serve reads is one the service takes.
		if _, err := userattrs.ParseAttributeRules([]byte(cm.path("data", "attribute-policy.yaml").(string)), userattrs.DefaultLimits); err != nil ||
			!bytes.Contains(args, []byte(`"--attribute-policy=/etc/userattrs/attribute-policy.yaml"`)) ||
			workload.path("spec", "template", "metadata", "annotations", "checksum/attribute-policy") == nil {
			t.Errorf("the attribute policy: %v, args %s", err, args)
		}
	} else if name == "keycloak" {
		t.Errorf("no attribute policy ConfigMap with attributePolicy")
	}
	if strings.Contains(name, "migration-job") {
		if objs["Job"] == nil || !bytes.Contains(args, []byte("--auto-migrate=false")) {
			t.Errorf("migration Job: want the Job and --auto-migrate=false in the pods")
		}
	}
	if rule := objs["PrometheusRule"]; rule != nil {
		var file struct {
			Groups []any `json:"groups"`
		}
		readYAML(t, "deploy/prometheus/userattrs.rules.yaml", &file)
		got, _ := json.Marshal(rule.path("spec", "groups"))
		want, _ := json.Marshal(file.Groups)
		if !bytes.Equal(got, want) {
			t.Errorf("the PrometheusRule differs from deploy/prometheus/userattrs.rules.yaml")
		}
	}
	if cm := objs["ConfigMap"]; cm != nil && cm.path("data", "attribute-policy.yaml") == nil {
		if cm.path("metadata", "labels", "grafana_dashboard") != "1" || !strings.Contains(cm.path("data", "userattrs.json").(string), `"uid": "userattrs"`) {
			t.Errorf("the dashboard ConfigMap lacks the sidecar label or the dashboard")
		}
	}
}

func keys(m map[string]object) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}
