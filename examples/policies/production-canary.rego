# Production needs a canary with analysis on every service that takes traffic.
# A service takes traffic when any of its steps gives the candidate a share of it.
package cutover

takes_traffic(s) if {
	some step in s.steps
	step.candidate_weight > 0
}

analysed(s) if {
	some step in s.steps
	step.action == "analysis"
}

deny contains msg if {
	input.environment == "production"
	some s in input.plan.services
	takes_traffic(s)
	s.strategy != "canary"
	msg := sprintf("%s takes traffic in production with a %s rollout; production needs a canary with analysis", [s.name, s.strategy])
}

deny contains msg if {
	input.environment == "production"
	some s in input.plan.services
	takes_traffic(s)
	s.strategy == "canary"
	not analysed(s)
	msg := sprintf("%s is a canary without analysis; production needs an analysis step before full traffic", [s.name])
}
