package main

// The body of a PUT as the Go client of older openapi-generator releases
// (7.17.0)
// types it: a map of any value, nil for null.
type body = map[string]any

func set(v any) any { return v }

var remove any
