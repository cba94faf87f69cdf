package agent

import (
	"maps"
	"testing"

	"github.com/ocmt/ocmt/api"
)

// TestCapTallyUpdate: what the agent role adds to ocmt_capability_calls_total
// from successive reads of one container's vault: the growth within one
// vault process; every count of a process that replaced a known one or that
// the agent role started; only a baseline for a vault it finds running;
// nothing for a read answered before the previous one.
func TestCapTallyUpdate(t *testing.T) {
	type m = map[string]uint64
	read := func(instance string, calls m) api.VaultStats {
		return api.VaultStats{Instance: instance, CapabilityCalls: calls}
	}
	var tl capTally
	for _, step := range []struct {
		name string
		do   func()         // before the read; nil = none
		read api.VaultStats // the vault's answer
		add  m              // what the agent adds
	}{
		{name: "a vault found running with no call yet", read: read("A", nil)},
		{name: "its first calls", read: read("A", m{"ok": 7, "revoked": 1}), add: m{"ok": 7, "revoked": 1}},
		{name: "growth", read: read("A", m{"ok": 9, "revoked": 1, "dropped": 2}), add: m{"ok": 2, "dropped": 2}},
		{name: "no change", read: read("A", m{"ok": 9, "revoked": 1, "dropped": 2})},
		{name: "an older read is ignored", read: read("A", m{"ok": 8, "revoked": 1})},
		{name: "growth after it counts from the highest read", read: read("A", m{"ok": 10, "revoked": 1, "dropped": 2}), add: m{"ok": 1}},
		{name: "a restarted vault (crash) counts from 0", read: read("B", m{"ok": 3}), add: m{"ok": 3}},
		{name: "then its growth", read: read("B", m{"ok": 4}), add: m{"ok": 1}},
		{name: "a read without an instance is ignored", read: read("", m{"ok": 100})},
		{name: "a start by the agent role", do: tl.started, read: read("C", m{"ok": 1, "invalid_request": 1}), add: m{"ok": 1, "invalid_request": 1}},
		{name: "removed: a vault found running is a baseline", do: tl.forget, read: read("D", m{"ok": 5})},
		{name: "removed, then provisioned", do: func() { tl.forget(); tl.started() }, read: read("E", m{"ok": 2}), add: m{"ok": 2}},
		{name: "a start that kept the same process", do: tl.started, read: read("E", m{"ok": 3}), add: m{"ok": 1}},
	} {
		if step.do != nil {
			step.do()
		}
		got := tl.update(step.read)
		if !maps.Equal(got, step.add) {
			t.Errorf("%s: added %v, want %v", step.name, got, step.add)
		}
	}
}
