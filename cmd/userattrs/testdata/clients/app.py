# An app developer's use of the Python client that openapi-generator makes
# from api/openapi.yaml: plain values in, plain values out. It prints one
# line per step, which the test compares with what it expects.
import json
import os
import sys

import userattrs_client
from userattrs_client.exceptions import ApiException

config = userattrs_client.Configuration(host=os.environ["USERATTRS_URL"], access_token=os.environ["USERATTRS_TOKEN"])
api = userattrs_client.DefaultApi(userattrs_client.ApiClient(config))
version = os.environ["USERATTRS_VERSION"]


def show(step, value):
    print(step, json.dumps(value, sort_keys=True, separators=(",", ":")), flush=True)


api.put_attributes(version, {"theme": "dark"})
show("put-string", "ok")
api.put_attributes(version, {"langs": ["de", "en"]})
show("put-list", "ok")
got = api.get_attributes_with_http_info(version)
show("get", got.data)
etag = got.headers["ETag"]
api.put_attributes(version, {"theme": None}, if_match=etag)
show("remove-if-match", "ok")
show("get", api.get_attributes(version))
try:
    api.put_attributes(version, {"theme": "light"}, if_match=etag)
    show("stale-if-match", "accepted")
except ApiException as e:
    show("stale-if-match", e.status)
