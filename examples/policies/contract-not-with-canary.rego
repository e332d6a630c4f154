# No contract migration in the same release as a service's first canary step: a contract
# is one-way, and a canary that has not been judged yet must still be able to roll back
# onto the old schema. Ship the contract in a later release.
package cutover

canary_steps(s) := [step |
	some step in s.steps
	step.action == "set_weight"
	step.weight > 0
	step.weight < 100
]

deny contains msg if {
	some m in input.plan.migrations
	m.contract_after_wave != null
	some name in m.services
	some s in input.plan.services
	s.name == name
	s.strategy == "canary"
	count(canary_steps(s)) > 0
	msg := sprintf("migration %s contracts in the same release as %s's first canary step; contract in a later release", [m.name, s.name])
}
