package docker

import (
	"context"
	"fmt"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// optEnableICC is the bridge driver option that, set to "false", stops
// containers on the network from reaching each other.
const optEnableICC = "com.docker.network.bridge.enable_icc"

// ensureNetwork makes sure the bridge network Options.Network exists with
// inter-container traffic disabled, creating it (labelled ocmt.managed=true)
// if missing. An existing network of that name that is not a bridge or
// allows inter-container traffic is an error: user containers must not
// reach each other.
//
// Engines before API 1.44 accept two networks with the same name (the
// client can no longer ask for CheckDuplicate), so two processes creating
// it at once may both succeed. Every creator then keeps the oldest managed
// network of that name and removes the others.
func (d *Driver) ensureNetwork(ctx context.Context) error {
	d.netMu.Lock()
	defer d.netMu.Unlock()
	if d.netOK {
		return nil
	}
	name := d.opts.Network
	nets, err := d.networksNamed(ctx, name)
	if err != nil {
		return err
	}
	if len(nets) == 0 {
		_, err := d.cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{
			Driver:  "bridge",
			Options: map[string]string{optEnableICC: "false"},
			Labels:  map[string]string{LabelManaged: "true"},
		})
		if err != nil && !cerrdefs.IsConflict(err) { // conflict: another process won the race
			return fmt.Errorf("create network %s: %w", name, err)
		}
		if err == nil {
			d.log.Info("network created", "network", name)
		}
		if nets, err = d.networksNamed(ctx, name); err != nil {
			return err
		}
		if len(nets) == 0 {
			return fmt.Errorf("create network %s: not found after creation", name)
		}
	}
	if len(nets) > 1 {
		nets = d.dedupeNetworks(ctx, nets)
	}
	n := nets[0]
	if n.Driver != "bridge" || n.Options[optEnableICC] != "false" {
		return fmt.Errorf("network %s exists but is not a bridge with %s=false; remove it or choose another network", name, optEnableICC)
	}
	d.netOK = true
	return nil
}

// forgetNetwork makes the next ensureNetwork check the engine again. It
// reports whether the network had been seen, i.e. whether a retry may help.
func (d *Driver) forgetNetwork() bool {
	d.netMu.Lock()
	defer d.netMu.Unlock()
	was := d.netOK
	d.netOK = false
	return was
}

// networksNamed lists the networks whose name is exactly name (the
// engine's name filter matches substrings), oldest first.
func (d *Driver) networksNamed(ctx context.Context, name string) ([]network.Summary, error) {
	res, err := d.cli.NetworkList(ctx, client.NetworkListOptions{
		Filters: make(client.Filters).Add("name", name),
	})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	var out []network.Summary
	for _, n := range res.Items {
		if n.Name == name {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b network.Summary) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// dedupeNetworks keeps the first (oldest) of nets and removes the other
// ocmt-managed ones; it returns what is left, the kept network first.
// Failures to remove (e.g. a network already in use) are logged: the
// containers then still resolve the name, if ambiguously, and a later
// ensureNetwork tries again.
func (d *Driver) dedupeNetworks(ctx context.Context, nets []network.Summary) []network.Summary {
	kept := nets[:1]
	for _, n := range nets[1:] {
		if n.Labels[LabelManaged] != "true" {
			kept = append(kept, n)
			continue
		}
		if _, err := d.cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			d.log.Warn("remove duplicate network", "network", n.Name, "id", shortID(n.ID), "err", err)
			kept = append(kept, n)
			continue
		}
		d.log.Info("removed duplicate network", "network", n.Name, "id", shortID(n.ID))
	}
	return kept
}

// Gateway returns the host's address on the agent network (creating the
// network if needed): the one host address user containers can reach, where
// services meant for them (the relay) listen.
func (d *Driver) Gateway(ctx context.Context) (string, error) {
	if err := d.ensureNetwork(ctx); err != nil {
		return "", err
	}
	res, err := d.cli.NetworkInspect(ctx, d.opts.Network, client.NetworkInspectOptions{})
	if err != nil {
		return "", fmt.Errorf("inspect network %s: %w", d.opts.Network, err)
	}
	for _, c := range res.Network.IPAM.Config {
		if c.Gateway.IsValid() && c.Gateway.Is4() {
			return c.Gateway.String(), nil
		}
	}
	return "", fmt.Errorf("network %s has no IPv4 gateway", d.opts.Network)
}
