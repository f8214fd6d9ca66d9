// Merges protoc-gen-swagger's per-service documents into one Swagger 2.0
// document for the whole HTTP API, with the bearer-token scheme, the error
// body and the notes a portal developer needs that the protos cannot say.
// A definition two services both define must be identical: anything else
// fails (it would mean two different messages under one name).
'use strict';
const fs = require('fs');

const docs = process.argv.slice(2).map((f) => JSON.parse(fs.readFileSync(f.replace(/\.proto$/, '.swagger.json'), 'utf8')));
const merged = {
  swagger: '2.0',
  info: {
    title: 'Aqueduct HTTP API',
    version: 'v1',
    description: [
      'The HTTP/JSON face of the Aqueduct intake, referral and scoring services, served by',
      'the gateway (services/gateway) and mapped from the protos\' google.api.http',
      'annotations. JSON is protobuf\'s canonical mapping (lowerCamelCase names,',
      'enums by name, 64-bit integers as strings).',
      '',
      'Every call needs `Authorization: Bearer <token>`. A path variable written',
      '`{name=users/*/screenings/*}` (or `{screening}` where the pattern is the',
      'same) takes the whole resource name, slashes and all:',
      '`/v1/users/u1/screenings/s1:complete`.',
      '',
      'A failed call answers with the HTTP status for its gRPC code and a',
      'google.rpc.Status body (`code`, `message`, `details` such as',
      'google.rpc.BadRequest naming the field, google.rpc.RetryInfo with a',
      'Retry-After header, google.rpc.ErrorInfo ETAG_MISMATCH with the current',
      'etag). Writes take the etag in the body or as `If-Match`; replies that',
      'carry one also send it as `ETag`. `Grpc-Timeout` (e.g. `5S`, `500m`)',
      'shortens the call\'s deadline.',
      '',
      '`GET /v1/referrals:watch` is a Server-Sent Events stream (text/event-stream):',
      '`event: watching` first, then `event: queue` frames whose data is a',
      'QueueEvent and whose `id` is its cursor; reconnect with `Last-Event-ID`',
      'to get exactly what was missed, or `event: reset` when that is too old',
      '(read the queue again, then follow the stream).',
    ].join('\n'),
  },
  schemes: ['https'],
  consumes: ['application/json'],
  produces: ['application/json'],
  securityDefinitions: {
    bearer: {
      type: 'apiKey',
      in: 'header',
      name: 'Authorization',
      description: 'Bearer <token> (aqueductctl token, or your identity provider)',
    },
  },
  security: [{ bearer: [] }],
  paths: {},
  definitions: {},
};

for (const doc of docs) {
  for (const [path, ops] of Object.entries(doc.paths || {})) {
    merged.paths[path] = Object.assign(merged.paths[path] || {}, ops);
  }
  for (const [name, def] of Object.entries(doc.definitions || {})) {
    const before = merged.definitions[name];
    if (before !== undefined && JSON.stringify(before) !== JSON.stringify(def)) {
      console.error(`merge: two different definitions named ${name}`);
      process.exit(1);
    }
    merged.definitions[name] = def;
  }
}
merged.definitions.googleRpcStatus = {
  type: 'object',
  description: 'The body of every failed call (google.rpc.Status).',
  properties: {
    code: { type: 'integer', format: 'int32', description: 'The gRPC status code.' },
    message: { type: 'string' },
    details: {
      type: 'array',
      items: { type: 'object', description: 'google.protobuf.Any, with @type' },
    },
  },
};
for (const ops of Object.values(merged.paths)) {
  for (const op of Object.values(ops)) {
    op.responses.default = {
      description: 'An error (google.rpc.Status)',
      schema: { $ref: '#/definitions/googleRpcStatus' },
    };
  }
}
const sorted = (o) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));
merged.paths = sorted(merged.paths);
merged.definitions = sorted(merged.definitions);
process.stdout.write(JSON.stringify(merged, null, 2) + '\n');
