/**
 * @module fastcgi/constants
 * The numbers of the FastCGI 1.0 specification, named with the spec's words
 * (record types, roles, flags, protocol statuses, GET_VALUES variable names).
 * Shared by both sides of the protocol.
 */

/** The only protocol version (FCGI_VERSION_1). */
export const FCGI_VERSION_1 = 1;
/** Every record starts with an 8-byte header (FCGI_HEADER_LEN). */
export const FCGI_HEADER_LEN = 8;
/** Management records carry request id 0 (FCGI_NULL_REQUEST_ID). */
export const FCGI_NULL_REQUEST_ID = 0;
/** contentLength is a 16-bit field. */
export const FCGI_MAX_CONTENT_LENGTH = 0xffff;
/** paddingLength is an 8-bit field. */
export const FCGI_MAX_PADDING_LENGTH = 0xff;
/** Largest possible record on the wire: header + content + padding. */
export const FCGI_MAX_RECORD_LENGTH = FCGI_HEADER_LEN + FCGI_MAX_CONTENT_LENGTH + FCGI_MAX_PADDING_LENGTH;
/** Request ids are 16-bit; 0 is reserved for management records. */
export const FCGI_MAX_REQUEST_ID = 0xffff;
/** Name and value lengths are at most 31 bits (the 4-byte form keeps the high bit as a marker). */
export const FCGI_MAX_NAME_VALUE_LENGTH = 0x7fffffff;

/** Record types (spec §8). */
export const RecordType = {
  BEGIN_REQUEST: 1,
  ABORT_REQUEST: 2,
  END_REQUEST: 3,
  PARAMS: 4,
  STDIN: 5,
  STDOUT: 6,
  STDERR: 7,
  DATA: 8,
  GET_VALUES: 9,
  GET_VALUES_RESULT: 10,
  UNKNOWN_TYPE: 11,
} as const;
export type RecordType = (typeof RecordType)[keyof typeof RecordType];
/** FCGI_MAXTYPE: types above it are unknown to FastCGI 1.0. */
export const FCGI_MAXTYPE = RecordType.UNKNOWN_TYPE;

/** Roles carried in BEGIN_REQUEST (spec §5.1). */
export const Role = {
  RESPONDER: 1,
  AUTHORIZER: 2,
  FILTER: 3,
} as const;
export type Role = (typeof Role)[keyof typeof Role];

/** BEGIN_REQUEST flags: FCGI_KEEP_CONN is the only one. */
export const Flags = {
  KEEP_CONN: 1,
} as const;

/** END_REQUEST protocolStatus values (spec §5.5). */
export const ProtocolStatus = {
  REQUEST_COMPLETE: 0,
  CANT_MPX_CONN: 1,
  OVERLOADED: 2,
  UNKNOWN_ROLE: 3,
} as const;
export type ProtocolStatus = (typeof ProtocolStatus)[keyof typeof ProtocolStatus];

/** The variables a GET_VALUES record may ask for (spec §4.1). */
export const ValueName = {
  MAX_CONNS: 'FCGI_MAX_CONNS',
  MAX_REQS: 'FCGI_MAX_REQS',
  MPXS_CONNS: 'FCGI_MPXS_CONNS',
} as const;
export type ValueName = (typeof ValueName)[keyof typeof ValueName];

/** Role number for a contract role name. */
export function roleNumber(name: 'RESPONDER' | 'AUTHORIZER' | 'FILTER'): Role {
  return Role[name];
}

/** Contract role name for a role number, or undefined for roles FastCGI 1.0 does not define. */
export function roleName(role: number): 'RESPONDER' | 'AUTHORIZER' | 'FILTER' | undefined {
  switch (role) {
    case Role.RESPONDER:
      return 'RESPONDER';
    case Role.AUTHORIZER:
      return 'AUTHORIZER';
    case Role.FILTER:
      return 'FILTER';
    default:
      return undefined;
  }
}
