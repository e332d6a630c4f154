# Production needs a change ticket ([release] change = "CHG-1234" or --change).
package cutover

has_change if {
	is_string(input.change)
	trim_space(input.change) != ""
}

deny contains msg if {
	input.environment == "production"
	not has_change
	msg := "production needs a change ticket: set [release] change = \"CHG-…\" or pass --change"
}
