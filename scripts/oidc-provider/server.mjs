// A real, certified OpenID Provider (oidc-provider by panva) for the tests,
// on 127.0.0.1: resource indicators, JWT and opaque access tokens,
// introspection, refresh and ID tokens, client credentials.
//
// Environment: PORT; ISSUER, when clients reach it at another address (a
// proxy in front of it), else http://127.0.0.1:PORT; KEYS, a JSON array of private JWKs (the first of an
// algorithm signs; keys with "use":"enc" are published for encryption
// only); INTROSPECTION_SECRET. It prints "ready <issuer>" once it listens.
//
// Tokens for users come from a test grant, urn:userattrs:test:tokens,
// allowed to the client "app" only: sub, resource, scope, format (jwt or
// opaque) and alg in, an access token, a refresh token and an ID token out.
// Nothing here is for production.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = process.env.ISSUER || `http://127.0.0.1:${port}`;
const keys = JSON.parse(process.env.KEYS);
const API = 'https://userattrs.test/api';
const OTHER_API = 'https://other.test/api';
const SCOPES = 'user:attributes:read user:attributes:write';

// Per resource server: its audience, the scopes it knows (the other API
// uses the same names on purpose), and the format of its access tokens,
// which a request may choose with a "format" parameter.
function resourceServerInfo(resource, format, alg) {
  return {
    audience: resource,
    scope: SCOPES,
    accessTokenTTL: 3600,
    accessTokenFormat: format === 'opaque' ? 'opaque' : 'jwt',
    jwt: { sign: { alg: alg || 'RS256' } },
  };
}

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'app',
      client_secret: 'app-secret',
      grant_types: ['client_credentials', 'refresh_token', 'urn:userattrs:test:tokens'],
      redirect_uris: [],
      response_types: [],
      scope: `openid offline_access ${SCOPES}`,
    },
    {
      client_id: 'userattrs',
      client_secret: process.env.INTROSPECTION_SECRET || 'introspection-secret',
      grant_types: [],
      redirect_uris: [],
      response_types: [],
    },
  ],
  jwks: { keys },
  scopes: ['openid', 'offline_access', 'user:attributes:read', 'user:attributes:write'],
  features: {
    devInteractions: { enabled: false },
    // With encryption on, the key set also holds an encryption key
    // (X25519), which verifiers must skip.
    encryption: { enabled: true },
    introspection: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => API,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== API && resource !== OTHER_API) {
          throw new Error('unknown resource');
        }
        return resourceServerInfo(resource, ctx.oidc.params?.format, ctx.oidc.params?.alg);
      },
    },
  },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  ttl: { RefreshToken: 14 * 24 * 3600, IdToken: 3600, Grant: 14 * 24 * 3600 },
});

provider.registerGrantType('urn:userattrs:test:tokens', async (ctx) => {
  const { client, params } = ctx.oidc;
  const { sub, scope } = params;
  const resource = params.resource || API;
  const grant = new provider.Grant({ clientId: client.clientId, accountId: sub });
  grant.addOIDCScope('openid offline_access');
  grant.addResourceScope(resource, scope);
  const grantId = await grant.save();

  const at = new provider.AccessToken({ accountId: sub, client, grantId, gty: 'urn:userattrs:test:tokens', scope });
  at.resourceServer = new provider.ResourceServer(resource, resourceServerInfo(resource, params.format, params.alg));
  const accessToken = await at.save();

  const rt = new provider.RefreshToken({
    accountId: sub, client, grantId, gty: 'urn:userattrs:test:tokens', rotations: 0,
    scope: `openid offline_access ${scope}`, resource,
  });
  const refreshToken = await rt.save();

  const it = new provider.IdToken({ sub }, { ctx });
  it.scope = 'openid';
  const idToken = await it.issue({ use: 'idtoken' });

  ctx.body = {
    access_token: accessToken, refresh_token: refreshToken, id_token: idToken,
    token_type: 'Bearer', expires_in: at.expiration, scope,
  };
}, new Set(['sub', 'scope', 'resource', 'format', 'alg']));

provider.listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`));
