// Package acl is the least privilege of each Switchboard binary on a
// Kafka cluster with an authorizer: the exact ACLs a role needs (For),
// written once here and used three ways, so they cannot disagree:
//
//   - Commands prints them as kafka-acls commands (docs/OPERATIONS.md, and
//     topics --print-acls);
//   - Apply creates them with kadm (topics --apply-acls);
//   - Check, run by each service at start on a secured connection, asks the
//     cluster which operations this client may do on each resource (Kafka's
//     authorized operations, KIP-430) and fails at once, naming the missing
//     operation and resource, instead of the service failing later, one
//     request at a time.
//
// The grants are literal topic, group and transactional-ID names (the topic
// names include the topics file's prefix), except a worker's transactional
// IDs, which are a prefix. Kafka 3.0+ lets a producer with Write on a topic
// be idempotent, so no role needs IdempotentWrite on the cluster (Kafka
// before 3.0 needs it for ingress, router-worker and redrive).
package acl

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// Roles: the binaries that need ACLs. RoleTopics provisions topics (the
// topics tool, or a service started with --provision-topics).
const (
	RoleIngress = "ingress"
	RoleRouter  = "router-worker"
	RoleEgress  = "egress"
	RoleRedrive = "redrive"
	RoleTopics  = "topics"
)

// Roles lists every role.
var Roles = []string{RoleIngress, RoleRouter, RoleEgress, RoleRedrive, RoleTopics}

// Default names of the groups and transactional IDs, as the binaries'
// own defaults.
const (
	DefaultRouterGroup  = "switchboard-router"
	DefaultWebhookGroup = "switchboard-egress-webhooks"
	DefaultRedriveGroup = "switchboard-redrive"
	// DefaultTransactionalPrefix starts every router-worker's
	// transactional ID unless --transactional-id names another.
	DefaultTransactionalPrefix = "switchboard-router-"
)

// Params are the names a role's grants depend on. Zero values are the
// binaries' defaults.
type Params struct {
	// Topics is the topics spec (its prefix included). Required.
	Topics *topicspec.Spec
	// RouterGroup is the router-workers' group (ingress reads its lag).
	RouterGroup string
	// WebhookGroup is egress's webhook delivery group.
	WebhookGroup string
	// RedriveGroup keeps redrive's progress.
	RedriveGroup string
	// ExactlyOnce adds a router-worker's transactional IDs.
	ExactlyOnce bool
	// TransactionalID is a router-worker's fixed transactional ID; empty:
	// any ID starting with DefaultTransactionalPrefix.
	TransactionalID string
	// Webhooks adds egress's webhook delivery (its group, and Write on
	// the dead-letter topic).
	Webhooks bool
	// NoAdmission drops ingress's Describe on the router group (ingress
	// started with --no-admission reads no lag).
	NoAdmission bool
	// NoConsole drops what egress's console reads (egress started with
	// --console off): the requests topics' offsets, the router group's
	// members and lag, the dead letters and the status topic.
	NoConsole bool
}

// Resource types of a Grant.
const (
	Topic           = kmsg.ACLResourceTypeTopic
	Group           = kmsg.ACLResourceTypeGroup
	Cluster         = kmsg.ACLResourceTypeCluster
	TransactionalID = kmsg.ACLResourceTypeTransactionalId
)

// Grant is one ACL: Operation allowed on a resource. Prefixed grants cover
// every name starting with Name.
type Grant struct {
	Resource  kmsg.ACLResourceType
	Name      string
	Prefixed  bool
	Operation kadm.ACLOperation
	// Why says what the binary does with it, for the docs.
	Why string
}

func (g Grant) String() string {
	p := ""
	if g.Prefixed {
		p = " (prefix)"
	}
	return fmt.Sprintf("%s on %s %s%s", opName(g.Operation), resName(g.Resource), g.Name, p)
}

func opName(op kadm.ACLOperation) string {
	return strings.ReplaceAll(strings.ToUpper(op.String()), "_", "")
}

func resName(r kmsg.ACLResourceType) string {
	switch r {
	case Topic:
		return "topic"
	case Group:
		return "group"
	case Cluster:
		return "cluster"
	case TransactionalID:
		return "transactional-id"
	}
	return strings.ToLower(r.String())
}

// For returns the grants role needs with p's names.
func For(role string, p Params) ([]Grant, error) {
	if p.Topics == nil {
		return nil, errors.New("acl: no topics spec")
	}
	t := func(logical string) string { return p.Topics.Name(logical) }
	routerGroup := cmp.Or(p.RouterGroup, DefaultRouterGroup)
	var g []Grant
	add := func(res kmsg.ACLResourceType, name string, op kadm.ACLOperation, why string) {
		g = append(g, Grant{Resource: res, Name: name, Operation: op, Why: why})
	}
	_, hasStatus := p.Topics.Topic(topicspec.Status)
	switch role {
	case RoleIngress:
		add(Topic, t(topicspec.RequestsInteractive), kmsg.ACLOperationWrite, "produce interactive requests")
		add(Topic, t(topicspec.RequestsBatch), kmsg.ACLOperationWrite, "produce batch requests")
		add(Topic, t(topicspec.Models), kmsg.ACLOperationRead, "read the model catalog (no group)")
		if !p.NoAdmission {
			add(Group, routerGroup, kmsg.ACLOperationDescribe, "read the router group's lag (admission)")
		}
		if hasStatus {
			add(Topic, t(topicspec.Status), kmsg.ACLOperationWrite, "publish its status record (the console)")
		}
	case RoleRouter:
		add(Topic, t(topicspec.RequestsInteractive), kmsg.ACLOperationRead, "consume interactive requests")
		add(Topic, t(topicspec.RequestsBatch), kmsg.ACLOperationRead, "consume batch requests")
		add(Group, routerGroup, kmsg.ACLOperationRead, "join the router group, commit offsets")
		add(Topic, t(topicspec.Results), kmsg.ACLOperationWrite, "produce results")
		add(Topic, t(topicspec.DeadLetter), kmsg.ACLOperationWrite, "produce dead letters")
		add(Topic, t(topicspec.Models), kmsg.ACLOperationWrite, "publish the model catalog")
		if hasStatus {
			add(Topic, t(topicspec.Status), kmsg.ACLOperationWrite, "publish its status record (the console)")
		}
		if _, ok := p.Topics.Topic(topicspec.History); ok {
			add(Topic, t(topicspec.History), kmsg.ACLOperationRead, "rebuild conversations' memory (no group)")
			add(Topic, t(topicspec.History), kmsg.ACLOperationWrite, "append to and forget conversations' memory")
		}
		if p.ExactlyOnce {
			if p.TransactionalID != "" {
				add(TransactionalID, p.TransactionalID, kmsg.ACLOperationWrite, "--exactly-once transactions")
			} else {
				g = append(g, Grant{Resource: TransactionalID, Name: DefaultTransactionalPrefix, Prefixed: true,
					Operation: kmsg.ACLOperationWrite, Why: "--exactly-once transactions (one ID per worker)"})
			}
		}
	case RoleEgress:
		add(Topic, t(topicspec.Results), kmsg.ACLOperationRead, "read results (every partition, no group)")
		if p.Webhooks {
			add(Group, cmp.Or(p.WebhookGroup, DefaultWebhookGroup), kmsg.ACLOperationRead, "--webhooks: the delivery group")
			add(Topic, t(topicspec.DeadLetter), kmsg.ACLOperationWrite, "--webhooks: dead-letter failed deliveries")
		}
		if !p.NoConsole {
			add(Topic, t(topicspec.RequestsInteractive), kmsg.ACLOperationDescribe, "console: offsets of interactive requests")
			add(Topic, t(topicspec.RequestsBatch), kmsg.ACLOperationDescribe, "console: offsets of batch requests")
			add(Topic, t(topicspec.DeadLetter), kmsg.ACLOperationRead, "console: read recent dead letters")
			add(Group, routerGroup, kmsg.ACLOperationDescribe, "console: the router group's members and lag")
			if hasStatus {
				add(Topic, t(topicspec.Status), kmsg.ACLOperationRead, "console: read the services' status records")
			}
		}
	case RoleRedrive:
		add(Topic, t(topicspec.DeadLetter), kmsg.ACLOperationRead, "read dead letters")
		add(Group, cmp.Or(p.RedriveGroup, DefaultRedriveGroup), kmsg.ACLOperationRead, "keep the re-drive's progress")
		add(Topic, t(topicspec.RequestsInteractive), kmsg.ACLOperationWrite, "re-drive interactive requests")
		add(Topic, t(topicspec.RequestsBatch), kmsg.ACLOperationWrite, "re-drive batch requests")
	case RoleTopics:
		for _, name := range p.Topics.Names() {
			add(Topic, name, kmsg.ACLOperationCreate, "create the topic")
			add(Topic, name, kmsg.ACLOperationAlter, "add partitions")
			add(Topic, name, kmsg.ACLOperationDescribeConfigs, "report config drift")
		}
	default:
		return nil, fmt.Errorf("acl: unknown role %q: want one of %s", role, strings.Join(Roles, ", "))
	}
	return g, nil
}

// Commands returns grants as kafka-acls commands for principal (e.g.
// User:ingress); bootstrap and config are the tool's --bootstrap-server and
// --command-config arguments.
func Commands(principal string, grants []Grant, bootstrap, config string) []string {
	var out []string
	for _, g := range grants {
		var res string
		switch g.Resource {
		case Topic:
			res = "--topic " + g.Name
		case Group:
			res = "--group " + g.Name
		case Cluster:
			res = "--cluster"
		case TransactionalID:
			res = "--transactional-id " + g.Name
		}
		if g.Prefixed {
			res += " --resource-pattern-type prefixed"
		}
		out = append(out, fmt.Sprintf("kafka-acls.sh --bootstrap-server %s --command-config %s --add --allow-principal %s --operation %s %s",
			bootstrap, config, principal, opFlag(g.Operation), res))
	}
	return out
}

// opFlag is the operation as kafka-acls spells it (Write, DescribeConfigs).
func opFlag(op kadm.ACLOperation) string {
	switch op {
	case kmsg.ACLOperationDescribeConfigs:
		return "DescribeConfigs"
	case kmsg.ACLOperationAlterConfigs:
		return "AlterConfigs"
	case kmsg.ACLOperationIdempotentWrite:
		return "IdempotentWrite"
	case kmsg.ACLOperationClusterAction:
		return "ClusterAction"
	}
	s := strings.ToLower(op.String())
	return strings.ToUpper(s[:1]) + s[1:]
}

// Apply creates grants for principal with adm (as a principal allowed to
// alter ACLs, e.g. a super user). Creating an ACL that exists is no error.
func Apply(ctx context.Context, adm *kadm.Client, principal string, grants []Grant) error {
	var errs []error
	for _, g := range grants {
		res, err := adm.CreateACLs(ctx, builder(principal, g))
		if err != nil {
			return fmt.Errorf("acl: create %s: %w", g, err)
		}
		for _, r := range res {
			if r.Err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", g, r.Err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("acl: %w", err)
	}
	return nil
}

// Delete removes grants of principal (the tests take one ACL away).
func Delete(ctx context.Context, adm *kadm.Client, principal string, grants []Grant) error {
	for _, g := range grants {
		if _, err := adm.DeleteACLs(ctx, builder(principal, g)); err != nil {
			return fmt.Errorf("acl: delete %s: %w", g, err)
		}
	}
	return nil
}

// builder is g as kadm's ACL builder for principal, from any host.
func builder(principal string, g Grant) *kadm.ACLBuilder {
	b := kadm.NewACLs().Allow(principal).AllowHosts("*").Operations(g.Operation)
	switch g.Resource {
	case Topic:
		b = b.Topics(g.Name)
	case Group:
		b = b.Groups(g.Name)
	case Cluster:
		b = b.Clusters()
	case TransactionalID:
		b = b.TransactionalIDs(g.Name)
	}
	if g.Prefixed {
		return b.ResourcePatternType(kadm.ACLPatternPrefixed)
	}
	return b.ResourcePatternType(kadm.ACLPatternLiteral)
}
