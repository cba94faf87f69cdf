// Package api holds ocmt's wire types (SPEC §11), the typed error every
// handler returns, the Agent interface by which the management role reaches
// the agent role (in-process in "all" mode, over HTTP when split), and a
// typed Client used by the CLI and tests.
package api
