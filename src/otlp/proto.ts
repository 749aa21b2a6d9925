// The OTLP Profiles message types, from the project's own .proto files (proto/, shipped with
// the package), loaded once with protobufjs. test/otlp-proto.test.ts checks them against the
// official opentelemetry-proto files.

import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

/** proto/ of the package: this file is src/otlp/proto.ts, compiled to dist/src/otlp/proto.js. */
export const PROTO_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'proto');

export const EXPORT_SERVICE = 'opentelemetry.proto.collector.profiles.v1development.ProfilesService';

export interface OtlpTypes {
  root: protobuf.Root;
  request: protobuf.Type;
  response: protobuf.Type;
  profilesData: protobuf.Type;
}

let types: OtlpTypes | undefined;

/** The types, loaded on first use. */
export function otlpTypes(): OtlpTypes {
  if (types) return types;
  const root = new protobuf.Root();
  root.loadSync(join(PROTO_DIR, 'profiles_service.proto'), { keepCase: false });
  const collector = 'opentelemetry.proto.collector.profiles.v1development';
  types = {
    root,
    request: root.lookupType(`${collector}.ExportProfilesServiceRequest`),
    response: root.lookupType(`${collector}.ExportProfilesServiceResponse`),
    profilesData: root.lookupType('opentelemetry.proto.profiles.v1development.ProfilesData'),
  };
  return types;
}
