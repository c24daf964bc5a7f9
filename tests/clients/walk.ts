// A short typed walk through copilot with openapi-typescript's types and openapi-fetch.
// Run by run.sh against a live server; checked by tsc --strict first.
import createClient from "openapi-fetch";
import type { paths, components } from "./schema.js";

type User = components["schemas"]["User"];

const base = `${process.env.COPILOT_URL}/api/v1`;
const anonymous = createClient<paths>({ baseUrl: base });

function check(ok: boolean, what: string, got?: unknown): void {
  if (!ok) throw new Error(`${what}: ${JSON.stringify(got)}`);
}

const login = await anonymous.POST("/auth/login", {
  body: { username: "admin", password: process.env.COPILOT_ADMIN_PASSWORD ?? "" },
});
check(login.data !== undefined, "log in", login.error);
const token = login.data!.access_token;
const client = createClient<paths>({ baseUrl: base, headers: { Authorization: `Bearer ${token}` } });

const created = await client.POST("/users", {
  body: { username: "tswalker", email: "tswalker@example.com", password: "walker-pass-1" },
});
check(created.response.status === 201, "create", created.error);
const user: User = created.data!;
const fullName: string | null = user.full_name; // a null field, typed as such
check(fullName === null, "null full_name", user);

const again = await client.POST("/users", {
  body: { username: "tswalker", email: "other@example.com", password: "walker-pass-1" },
});
check(again.response.status === 409 && again.error !== undefined && again.error.detail.length > 0, "409", again.error);

for (const name of ["ts 1", "ts 2", "ts 3"]) {
  const p = await client.POST("/projects", { body: { name, description: "d" } });
  check(p.response.status === 201, "project", p.error);
}
const page = await client.GET("/projects", { params: { query: { limit: 2, skip: 0 } } });
check(page.data !== undefined && page.data.data.length === 2 && page.data.has_more, "paging", page.data);
const first = page.data!.data[0];

const cleared = await client.PUT("/projects/{id}", {
  params: { path: { id: first.id } },
  body: { description: null }, // clear with null
});
check(cleared.data !== undefined && cleared.data.description === null, "clear", cleared.data);

const missing = await client.GET("/users/{id}", {
  params: { path: { id: "01900000-0000-7000-8000-000000000000" } },
});
check(missing.response.status === 404 && missing.error !== undefined, "404", missing.error);
console.log("typescript client walk: ok");
