package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/userattrs/userattrs"
)

// attributePolicy is the attribute policy file of serve
// (--attribute-policy), and the lists it goes with.
type attributePolicy struct {
	path   string
	lists  userattrs.PolicyConfig // from the flags, which a reload keeps
	limits userattrs.Limits
}

// load reads and checks the file, and returns the whole policy: the
// lists with the file's rules. Its error is one line naming the file.
func (a *attributePolicy) load() (userattrs.Policy, error) {
	cfg := a.lists
	if a.path != "" {
		data, err := os.ReadFile(a.path)
		if err != nil {
			return userattrs.Policy{}, fmt.Errorf("--attribute-policy %s: %w", a.path, err)
		}
		if cfg.Rules, err = userattrs.ParseAttributeRules(data, a.limits); err != nil {
			return userattrs.Policy{}, fmt.Errorf("--attribute-policy %s: %w", a.path, err)
		}
	}
	return userattrs.NewPolicy(cfg)
}

// policyMetrics say which version of the file is in force, and how
// reloads went.
type policyMetrics struct {
	info    *prometheus.GaugeVec
	reloads *prometheus.CounterVec
}

func newPolicyMetrics(reg prometheus.Registerer) *policyMetrics {
	m := &policyMetrics{
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "userattrs_attribute_policy_info",
			Help: "Always 1: the version (the first 12 hex digits of the SHA-256) of the attribute policy file in force; \"\" without one."},
			[]string{"version"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "userattrs_attribute_policy_reloads_total",
			Help: "Reloads of the attribute policy file on SIGHUP, by result: applied, or refused (the policy in force stays)."},
			[]string{"result"}),
	}
	reg.MustRegister(m.info, m.reloads)
	return m
}

func (m *policyMetrics) inForce(p userattrs.Policy) {
	m.info.Reset()
	m.info.WithLabelValues(p.RulesVersion()).Set(1)
}

// reloadOnHangup reloads the file into svc on every SIGHUP until ctx ends.
// A file that fails its checks is refused, with an error logged, and the
// policy in force stays.
func (a *attributePolicy) reloadOnHangup(ctx context.Context, svc *userattrs.Service, m *policyMetrics, logger *slog.Logger) {
	hangups := make(chan os.Signal, 1)
	signal.Notify(hangups, syscall.SIGHUP)
	defer signal.Stop(hangups)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hangups:
		}
		p, err := a.load()
		if err != nil {
			m.reloads.WithLabelValues("refused").Inc()
			logger.Error("attribute policy: the file was not reloaded; the policy in force stays", "error", err.Error(),
				"version", svc.Policy().RulesVersion())
			continue
		}
		svc.SetPolicy(p)
		m.inForce(p)
		m.reloads.WithLabelValues("applied").Inc()
		logger.Info("attribute policy: reloaded", "version", p.RulesVersion())
	}
}
