// The one Node global the walk reads, without pulling in @types/node.
declare const process: { env: Record<string, string | undefined> };
