package acl

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
)

// ErrMissing marks a start refused because an ACL the role needs is
// missing.
var ErrMissing = errors.New("missing Kafka ACLs")

// Check asks the cluster, through cl, which operations this client may do
// on the resources of grants (Kafka's authorized operations: Metadata for
// topics, DescribeGroups for groups, DescribeCluster for the cluster; a
// transactional ID is checked with DescribeTransactions, which needs
// Describe, implied by Write). It returns an error wrapping ErrMissing that
// lists every grant the cluster does not give, as "WRITE on topic x"; who
// names the principal in that error. A topic that does not exist yet is not
// an ACL matter and is skipped; so is a resource the cluster does not
// report operations for.
func Check(ctx context.Context, cl *kgo.Client, grants []Grant, who string) error {
	byRes := map[kmsg.ACLResourceType]map[string][]Grant{}
	for _, g := range grants {
		if byRes[g.Resource] == nil {
			byRes[g.Resource] = map[string][]Grant{}
		}
		byRes[g.Resource][g.Name] = append(byRes[g.Resource][g.Name], g)
	}
	var missing []Grant
	for _, c := range []struct {
		res   kmsg.ACLResourceType
		check func(context.Context, *kgo.Client, map[string][]Grant) ([]Grant, error)
	}{{Topic, checkTopics}, {Group, checkGroups}, {Cluster, checkCluster}, {TransactionalID, checkTransactionalIDs}} {
		m, err := c.check(ctx, cl, byRes[c.res])
		if err != nil {
			return err
		}
		missing = append(missing, m...)
	}
	if len(missing) == 0 {
		return nil
	}
	slices.SortFunc(missing, func(a, b Grant) int { return strings.Compare(a.String(), b.String()) })
	list := make([]string, len(missing))
	for i, g := range missing {
		list[i] = g.String()
	}
	return fmt.Errorf("%w: %s may not %s (grant them: docs/OPERATIONS.md, or topics --apply-acls)", ErrMissing, who, strings.Join(slices.Compact(list), "; "))
}

// notAllowed returns gs's grants whose operation ops (a KIP-430 bit field)
// does not hold; none when ops is not reported.
func notAllowed(gs []Grant, ops int32) []Grant {
	if ops == math.MinInt32 {
		return nil
	}
	var out []Grant
	for _, g := range gs {
		if !slices.Contains(kadm.DecodeACLOperations(ops), g.Operation) {
			out = append(out, g)
		}
	}
	return out
}

// checkTopics asks Metadata for the topics' authorized operations.
func checkTopics(ctx context.Context, cl *kgo.Client, topics map[string][]Grant) ([]Grant, error) {
	if len(topics) == 0 {
		return nil, nil
	}
	req := kmsg.NewPtrMetadataRequest()
	req.IncludeTopicAuthorizedOperations = true
	for name := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(name)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("check ACLs: metadata: %w", err)
	}
	var missing []Grant
	for _, t := range resp.Topics {
		var name string
		if t.Topic != nil {
			name = *t.Topic
		}
		switch err := kerr.ErrorForCode(t.ErrorCode); {
		case errors.Is(err, kerr.TopicAuthorizationFailed):
			missing = append(missing, topics[name]...)
		case err == nil:
			missing = append(missing, notAllowed(topics[name], t.AuthorizedOperations)...)
		}
	}
	return missing, nil
}

// checkGroups asks DescribeGroups (at each group's coordinator) for the
// groups' authorized operations; a group whose coordinator cannot even be
// asked lacks every grant.
func checkGroups(ctx context.Context, cl *kgo.Client, groups map[string][]Grant) ([]Grant, error) {
	if len(groups) == 0 {
		return nil, nil
	}
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.IncludeAuthorizedOperations = true
	for name := range groups {
		req.Groups = append(req.Groups, name)
	}
	var missing []Grant
	seen := map[string]bool{}
	for _, sh := range cl.RequestSharded(ctx, req) {
		if sh.Err != nil {
			if errors.Is(sh.Err, kerr.GroupAuthorizationFailed) {
				continue // its groups are unseen, below
			}
			return nil, fmt.Errorf("check ACLs: describe groups: %w", sh.Err)
		}
		for _, g := range sh.Resp.(*kmsg.DescribeGroupsResponse).Groups {
			seen[g.Group] = true
			switch err := kerr.ErrorForCode(g.ErrorCode); {
			case errors.Is(err, kerr.GroupAuthorizationFailed):
				missing = append(missing, groups[g.Group]...)
			case err == nil:
				missing = append(missing, notAllowed(groups[g.Group], g.AuthorizedOperations)...)
			}
		}
	}
	for name, gs := range groups {
		if !seen[name] {
			missing = append(missing, gs...)
		}
	}
	return missing, nil
}

// checkCluster asks DescribeCluster for the cluster's authorized
// operations.
func checkCluster(ctx context.Context, cl *kgo.Client, cluster map[string][]Grant) ([]Grant, error) {
	if len(cluster) == 0 {
		return nil, nil
	}
	req := kmsg.NewPtrDescribeClusterRequest()
	req.IncludeClusterAuthorizedOperations = true
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("check ACLs: describe cluster: %w", err)
	}
	var missing []Grant
	for _, gs := range cluster {
		missing = append(missing, notAllowed(gs, resp.ClusterAuthorizedOperations)...)
	}
	return missing, nil
}

// checkTransactionalIDs asks DescribeTransactions, which needs Describe on
// the ID (implied by Write); for a prefix, an ID under it.
func checkTransactionalIDs(ctx context.Context, cl *kgo.Client, ids map[string][]Grant) ([]Grant, error) {
	var missing []Grant
	for name, gs := range ids {
		id := name
		if gs[0].Prefixed {
			id += "acl-check"
		}
		req := kmsg.NewPtrDescribeTransactionsRequest()
		req.TransactionalIDs = []string{id}
		for _, sh := range cl.RequestSharded(ctx, req) {
			err := sh.Err
			if err == nil {
				for _, s := range sh.Resp.(*kmsg.DescribeTransactionsResponse).TransactionStates {
					err = errors.Join(err, kerr.ErrorForCode(s.ErrorCode))
				}
			}
			if errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
				missing = append(missing, gs...)
				break
			}
		}
	}
	return missing, nil
}

// CheckStart is a service's check at start: on a secured connection (TLS
// or SASL, where a cluster has principals to give ACLs to) it runs Check
// with role's grants, bounded by wait; on a plaintext one, or with
// --kafka-acl-check off, it does nothing.
// A cluster that does not answer within wait is left to the service's own
// retries (nil).
func CheckStart(ctx context.Context, kafka kafkaconf.Config, role string, p Params, wait time.Duration) error {
	if !kafka.Secured() || kafka.NoACLCheck {
		return nil
	}
	grants, err := For(role, p)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(kafka.Opts(nil)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	who := "this client"
	switch {
	case kafka.SASL.Username != "":
		who = "User:" + kafka.SASL.Username
	case kafka.TLS.CertFile != "":
		who = "the principal of " + kafka.TLS.CertFile
	}
	for {
		err = Check(ctx, cl, grants, who)
		if err == nil || errors.Is(err, ErrMissing) || !kerr.IsRetriable(err) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		// A new cluster has no group coordinator until __consumer_offsets
		// exists: ask again, within wait.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(250 * time.Millisecond):
		}
	}
}
