"""Jobs as the domain sees them: create (submit, fork), list, read, cancel."""
