// An app developer's use of the TypeScript (typescript-fetch) client that
// openapi-generator makes from api/openapi.yaml. It prints one line per
// step, which the test compares with what it expects.
import { Configuration, DefaultApi, ResponseError } from "./client";

declare const process: { env: Record<string, string | undefined>; exit(code: number): never };

// typescript-fetch sends an OAuth2 access token as the whole Authorization
// header: the app adds the scheme.
const api = new DefaultApi(new Configuration({
  basePath: process.env.USERATTRS_URL,
  accessToken: "Bearer " + process.env.USERATTRS_TOKEN,
}));
const version = process.env.USERATTRS_VERSION as any;

function show(step: string, value: unknown) {
  const sorted = value && typeof value === "object" && !Array.isArray(value)
    ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : 1)))
    : value;
  console.log(step, JSON.stringify(sorted));
}

async function main() {
  await api.putAttributes({ version, requestBody: { theme: "dark" } });
  show("put-string", "ok");
  await api.putAttributes({ version, requestBody: { langs: ["de", "en"] } });
  show("put-list", "ok");
  const raw = await api.getAttributesRaw({ version });
  show("get", await raw.value());
  const etag = raw.raw.headers.get("ETag") ?? "";
  await api.putAttributes({ version, requestBody: { theme: null }, ifMatch: etag });
  show("remove-if-match", "ok");
  show("get", await api.getAttributes({ version }));
  try {
    await api.putAttributes({ version, requestBody: { theme: "light" }, ifMatch: etag });
    show("stale-if-match", "accepted");
  } catch (e) {
    if (!(e instanceof ResponseError)) throw e;
    show("stale-if-match", e.response.status);
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
