'use strict';
// Reads JSON lines {"era": "...", "q": "<raw query>"} on stdin and writes one
// JSON line per input: what Rocket.Chat of that era answers an authenticated
// GET /api/v1/sessions/info?<q>, before the lookup:
//   {"status": 400, "body": "<exact body>"} or {"status": 200, "sessionId": "..."}.
// Eras: "meteor" (5.x-7.5: Node's url.parse, qs 6.11 defaults, Meteor.Error body),
// "router" (7.6+: WHATWG URL, qs 6.14 with the router's options, typed body).
const readline = require('readline');
const url = require('url');
const Ajv = require('ajv');

const qsMeteor = require('qs611');
const qsRouter = require('qs614');

const schema = {
	type: 'object',
	properties: { sessionId: { type: 'string' } },
	required: ['sessionId'],
	additionalProperties: false,
};
// Rocket.Chat's rest-typings: one Ajv with coerceTypes, allErrors off.
const validate = new Ajv({ coerceTypes: true }).compile(schema);

function answer(era, q) {
	const target = '/api/v1/sessions/info?' + q;
	let query;
	if (era === 'meteor') {
		query = qsMeteor.parse(url.parse(target).query || '');
	} else {
		const search = new URL(target, 'http://localhost').search;
		try {
			query = qsRouter.parse(search.slice(1), { arrayLimit: 500, throwOnLimitExceeded: true });
		} catch (e) {
			return { status: 400, body: JSON.stringify({ success: false, error: 'Invalid query parameters' }) };
		}
	}
	if (!validate(query)) {
		const messages = validate.errors.map((e) => e.message);
		if (era === 'meteor') {
			// new Meteor.Error('invalid-params', reason): message is "reason [error]".
			return {
				status: 400,
				body: JSON.stringify({ success: false, error: messages.join('\n ') + ' [invalid-params]', errorType: 'invalid-params' }),
			};
		}
		return {
			status: 400,
			body: JSON.stringify({ success: false, errorType: 'error-invalid-params', error: messages.join('\n') }),
		};
	}
	return { status: 200, sessionId: query.sessionId };
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
const out = [];
rl.on('line', (line) => {
	const { era, q } = JSON.parse(line);
	out.push(JSON.stringify(answer(era, q)));
	if (out.length >= 512) {
		process.stdout.write(out.join('\n') + '\n');
		out.length = 0;
	}
});
rl.on('close', () => {
	if (out.length) process.stdout.write(out.join('\n') + '\n');
});
