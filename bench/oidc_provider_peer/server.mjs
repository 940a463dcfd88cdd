// oidc-provider configured like a Kakehashi tenant for the token exchange: one
// private_key_jwt client, PKCE S256 required, RS256 ID tokens. A bench-only endpoint
// mints codes through the library's own Grant and AuthorizationCode models (untimed),
// so that the measured part is only POST /token. Started by bench/oidc_bench.py.
import { generateKeyPairSync } from "node:crypto";
import http from "node:http";
import Provider from "oidc-provider";
import pg from "pg";

const port = Number(process.env.PORT);
const redirectUri = process.env.REDIRECT_URI;
const signing = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" });

// The library's default memory adapter is an LRU of 1,000 entries: a run of a few
// hundred codes (each with its grant, then tokens and replay-detection entries) would
// evict codes before they are used. An unbounded Map is the same storage, without that.
const stores = new Map();
class MapAdapter {
  constructor(name) { this.name = name; if (!stores.has(name)) stores.set(name, new Map()); this.map = stores.get(name); }
  async upsert(id, payload) { this.map.set(id, payload); }
  async find(id) { return this.map.get(id); }
  async findByUid(uid) { for (const value of this.map.values()) if (value.uid === uid) return value; return undefined; }
  async findByUserCode(code) { for (const value of this.map.values()) if (value.userCode === code) return value; return undefined; }
  async consume(id) { const value = this.map.get(id); if (value) value.consumed = Math.floor(Date.now() / 1000); }
  async destroy(id) { this.map.delete(id); }
  async revokeByGrantId(grantId) { for (const [id, value] of this.map) if (value.grantId === grantId) this.map.delete(id); }
}

// The same storage as Kakehashi's: every model in one PostgreSQL table, one statement
// per adapter call, committed before the call returns (node-postgres autocommit).
const pool = process.env.PEER_DATABASE_URL ? new pg.Pool({ connectionString: process.env.PEER_DATABASE_URL, max: 8 }) : null;
if (pool) {
  await pool.query(`create table if not exists oidc_peer_models (
    kind text not null, id text not null, payload jsonb not null, grant_id text, user_code text, uid text,
    expires_at timestamptz, consumed_at timestamptz, primary key (kind, id))`);
  await pool.query("create index if not exists oidc_peer_models_grant on oidc_peer_models (grant_id)");
}
class PostgresAdapter {
  constructor(name) { this.name = name; }
  async upsert(id, payload, expiresIn) {
    await pool.query(`insert into oidc_peer_models (kind, id, payload, grant_id, user_code, uid, expires_at)
      values ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
      on conflict (kind, id) do update set payload = excluded.payload, expires_at = excluded.expires_at`,
      [this.name, id, payload, payload.grantId ?? null, payload.userCode ?? null, payload.uid ?? null, expiresIn ?? 3600]);
  }
  async #one(where, value) {
    const { rows } = await pool.query(`select payload, consumed_at from oidc_peer_models
      where kind = $1 and ${where} = $2 and (expires_at is null or expires_at > now())`, [this.name, value]);
    if (!rows.length) return undefined;
    const { payload, consumed_at: consumed } = rows[0];
    return consumed ? { ...payload, consumed: Math.floor(consumed.getTime() / 1000) } : payload;
  }
  find(id) { return this.#one("id", id); }
  findByUid(uid) { return this.#one("uid", uid); }
  findByUserCode(code) { return this.#one("user_code", code); }
  async consume(id) { await pool.query("update oidc_peer_models set consumed_at = now() where kind = $1 and id = $2", [this.name, id]); }
  async destroy(id) { await pool.query("delete from oidc_peer_models where kind = $1 and id = $2", [this.name, id]); }
  async revokeByGrantId(grantId) { await pool.query("delete from oidc_peer_models where grant_id = $1", [grantId]); }
}

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: "bench-rp",
    token_endpoint_auth_method: "private_key_jwt",
    token_endpoint_auth_signing_alg: "ES256",
    jwks: JSON.parse(process.env.CLIENT_JWKS),
    redirect_uris: [redirectUri],
    grant_types: ["authorization_code"],
    response_types: ["code"],
  }],
  jwks: { keys: [{ ...signing, alg: "RS256", use: "sig", kid: "bench" }] },
  pkce: { required: () => true },
  adapter: pool ? PostgresAdapter : MapAdapter,
  features: { devInteractions: { enabled: false } },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
});

const oidc = provider.callback();

http.createServer(async (req, res) => {
  if (req.method === "POST" && req.url === "/_bench/code") {
    let body = "";
    for await (const chunk of req) body += chunk;
    const { code_challenge: codeChallenge } = JSON.parse(body);
    const client = await provider.Client.find("bench-rp");
    const grant = new provider.Grant({ accountId: "bench-user", clientId: "bench-rp" });
    grant.addOIDCScope("openid");
    const grantId = await grant.save();
    const code = new provider.AuthorizationCode({
      accountId: "bench-user", client, grantId, redirectUri, scope: "openid", codeChallenge,
      codeChallengeMethod: "S256", authTime: Math.floor(Date.now() / 1000), nonce: "n",
    });
    const value = await code.save();
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ code: value }));
    return;
  }
  oidc(req, res);
}).listen(port, "127.0.0.1");
