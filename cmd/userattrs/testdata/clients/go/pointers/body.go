package main

// The body of a PUT as the Go client of recent openapi-generator releases
// (7.25.0)
// types it: a map of pointers, nil for null.
type body = map[string]*any

func set(v any) *any { return &v }

var remove *any
