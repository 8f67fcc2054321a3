// Package sdkdecode ports, line by line, what the published PACE SDKs do
// with the service's answers, so that tests can run every answer they get
// through the same steps an app's SDK takes.
package sdkdecode

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// DecodeIOS is what the PACE iOS SDK (pace/cloud-sdk-ios) does with the
// body of a 200 answer to GET attributes, and what an app then receives:
//
//   - UserAPIClient.swift:26 decodes every answer with a JapxDecoder;
//   - UserAPIGetUserAttributes.swift:1003, on 200, calls decodeAnyJson;
//   - Coding.swift:30-33 (extension JapxDecoder: ResponseDecoder) calls
//     Japx's decode with includeList nil;
//   - Coding.swift:94-99 (decodeAnyJson) decodes [String: AnyCodable] and
//     turns any error into DecodingError.typeMismatch: the app gets no
//     attributes at all;
//   - Japx 5.0.0 (pace/Japx), JapxCodable.swift:73-76: JapxKit.Decoder.data,
//     then JSONDecoder over the result;
//   - JapxCore.swift:197-218 (jsonObject(with:includeList:) without an
//     include list) and 325-357 (decode(jsonApiInput: NSDictionary)), with
//     the helpers at 419-490 and 678-707.
//
// The decoded value is a JSON object; the error is the one the app sees,
// when it sees one.
func DecodeIOS(body []byte) (map[string]any, error) {
	// JapxCore.swift:198 JSONSerialization.jsonObject, :209-211 the top
	// level must be a dictionary.
	var top any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil {
		return nil, typeMismatch(fmt.Errorf("JSONSerialization: %w", err))
	}
	jsonAPI, ok := top.(map[string]any)
	if !ok {
		return nil, typeMismatch(errors.New("JapxError.unableToConvertDataToJson: the top level is not a dictionary"))
	}
	// :328 the data objects: a thrown error ends the decoding.
	dataObjects, err := array(jsonAPI, "data")
	if err != nil {
		return nil, typeMismatch(err)
	}
	// :329 the included objects: an error is swallowed (try?), and the
	// member is removed at :355 whatever it held.
	included, err := array(jsonAPI, "included")
	if err != nil {
		included = nil
	}

	// :331-344 every object by its type and id; an object of the same
	// type and id as an earlier one replaces it.
	type typeID struct{ typ, id any }
	var dataKeys []typeID
	objects := map[typeID]map[string]any{}
	for _, o := range dataObjects {
		k := typeID{stringOrNil(o["type"]), stringOrNil(o["id"])} // :678-682
		dataKeys = append(dataKeys, k)
		objects[k] = o
	}
	for _, o := range included {
		objects[typeID{stringOrNil(o["type"]), stringOrNil(o["id"])}] = o
	}
	// :419-425 resolveAttributes: an object's attributes move up into it.
	for _, o := range objects {
		if attrs, ok := o["attributes"].(map[string]any); ok {
			for k, v := range attrs {
				o[k] = v
			}
		}
		delete(o, "attributes")
	}
	// :427-466 resolveRelationships, without parseNotIncludedRelationships
	// (the default, :74): a relationship's objects are those found above.
	for _, o := range objects {
		rels, _ := o["relationships"].(map[string]any) // :436 defaultDict
		for name, rel := range rels {
			params, ok := rel.(map[string]any)
			if !ok {
				return nil, typeMismatch(fmt.Errorf("JapxError.relationshipNotFound: %q", name)) // :438-440
			}
			others, err := array(params, "data")
			if err != nil {
				return nil, typeMismatch(err)
			}
			if others == nil {
				o[name] = nil // :443-446
				continue
			}
			found := []any{}
			for _, other := range others {
				if obj, ok := objects[typeID{stringOrNil(other["type"]), stringOrNil(other["id"])}]; ok {
					found = append(found, obj)
				}
			}
			if _, isObject := params["data"].(map[string]any); isObject && len(others) == 1 {
				if len(found) == 1 {
					o[name] = found[0]
				} else {
					o[name] = nil // :459 `othersObjects.first as Any`, nil
				}
			} else {
				o[name] = found
			}
		}
		delete(o, "relationships")
	}
	// :349-355 data becomes the one object it was, or the list of objects
	// (an empty list when there was none); included goes.
	if _, isObject := jsonAPI["data"].(map[string]any); isObject && len(dataKeys) == 1 {
		jsonAPI["data"] = objects[dataKeys[0]]
	} else {
		list := make([]any, 0, len(dataKeys))
		for _, k := range dataKeys {
			list = append(list, objects[k])
		}
		jsonAPI["data"] = list
	}
	delete(jsonAPI, "included")
	// JapxCore.swift:229 JSONSerialization.data, then JSONDecoder into
	// [String: AnyCodable], which takes any JSON value.
	return jsonAPI, nil
}

// array is NSDictionary.array(from:) of JapxCore.swift:695-707: a list of
// dictionaries, a dictionary as a list of one, nothing for an absent or
// null member, and JapxError.cantProcess for anything else, a list that
// holds anything but dictionaries included.
func array(d map[string]any, key string) ([]map[string]any, error) {
	switch v := d[key].(type) {
	case nil:
		return nil, nil
	case map[string]any:
		return []map[string]any{v}, nil
	case []any:
		list := make([]map[string]any, 0, len(v))
		for _, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("JapxError.cantProcess: member %q is not a list of dictionaries", key)
			}
			list = append(list, m)
		}
		return list, nil
	default:
		return nil, fmt.Errorf("JapxError.cantProcess: member %q is neither a dictionary nor a list of them", key)
	}
}

// stringOrNil is `as? String` (JapxCore.swift:679-680).
func stringOrNil(v any) any {
	if s, ok := v.(string); ok {
		return s
	}
	return nil
}

// typeMismatch is what decodeAnyJson (Coding.swift:95-97) makes of any
// error: the app learns only that the attributes could not be decoded.
func typeMismatch(cause error) error {
	return fmt.Errorf("DecodingError.typeMismatch([String: AnyCodable]) (cause: %w)", cause)
}

// CheckIOS fails t unless an iOS app decodes the GET attributes body into
// exactly the attributes it holds, plus the member "data" with the value
// [] that the decoder adds to every result (see docs: the service cannot
// avoid it).
func CheckIOS(t testing.TB, body []byte) {
	t.Helper()
	got, err := DecodeIOS(body)
	if err != nil {
		t.Fatalf("the iOS SDK cannot decode the GET body %s: %v", body, err)
	}
	var want map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&want); err != nil {
		t.Fatalf("GET body %s: %v", body, err)
	}
	want["data"] = []any{}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the iOS SDK decodes the GET body %s as %v", body, got)
	}
}
