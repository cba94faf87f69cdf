package docker

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/roles/agent/runtime"
)

// Stats takes one non-streaming sample of the container's resource use.
// MemoryBytes is the cgroup's memory usage minus its inactive page cache
// (what `docker stats` shows, close to resident memory); Pids counts the
// container's processes. A stopped container reads as zero. An unknown id
// gives runtime.ErrNotFound.
func (d *Driver) Stats(ctx context.Context, id string) (runtime.Stats, error) {
	res, err := d.cli.ContainerStats(ctx, id, client.ContainerStatsOptions{Stream: false})
	if err != nil {
		return runtime.Stats{}, engineErr("read stats of container", id, err)
	}
	defer res.Body.Close()
	var s container.StatsResponse
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		return runtime.Stats{}, fmt.Errorf("read stats of container %s: %w", shortID(id), err)
	}
	return runtime.Stats{MemoryBytes: workingSet(s.MemoryStats), Pids: s.PidsStats.Current}, nil
}

// workingSet returns usage minus inactive file cache: total_inactive_file
// on cgroup v1, inactive_file on cgroup v2, else (old engines) cache.
func workingSet(m container.MemoryStats) uint64 {
	for _, key := range []string{"total_inactive_file", "inactive_file", "cache"} {
		if v, ok := m.Stats[key]; ok {
			if v < m.Usage {
				return m.Usage - v
			}
			return m.Usage
		}
	}
	return m.Usage
}
