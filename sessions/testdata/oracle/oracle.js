'use strict';
// Reads JSON lines {"era": "...", "q": "<raw query>"} on stdin and writes one
// JSON line per input: what Rocket.Chat of that era answers an authenticated
// GET /api/v1/sessions/info?<q>, before the lookup:
//   {"status": 400, "body": "<exact body>"} or {"status": 200, "sessionId": "..."}.
// Eras: "meteor" (5.x-7.5: Node's url.parse, qs 6.11 defaults, Meteor.Error body),
// "router" (7.6-7.x: Hono's WHATWG Request, qs 6.14 with the router's options,
// the legacy route's Meteor.Error body), "typed" (8.0+: the same parsing, the
// typed route's body).
const readline = require('readline');
const parseUrl = require('parseurl');
const Ajv = require('ajv');
const { Hono } = require('hono');

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

// The router era as Rocket.Chat's packages/http-router runs it: Express
// hands req.originalUrl to hono.request, which makes a WHATWG Request of it;
// the route takes request.raw.url.split('?')[1] to qs.parse with the
// router's options, and answers a failed validation itself.
const router = new Hono();
for (const typed of [false, true]) {
	router.get(typed ? '/typed/api/v1/sessions/info' : '/api/v1/sessions/info', (c) => {
		let query;
		try {
			query = qsRouter.parse(c.req.raw.url.split('?')?.[1] || '', { arrayLimit: 500, throwOnLimitExceeded: true });
		} catch (e) {
			return c.json({ success: false, error: 'Invalid query parameters' }, 400);
		}
		if (!validate(query)) {
			const message = validate.errors.map((e) => e.message).join('\n ');
			if (typed) {
				return c.json({ success: false, errorType: 'error-invalid-params', error: message }, 400);
			}
			// A legacy route: ApiClass throws Meteor.Error('invalid-params', message)
			// and answers API.v1.failure(e.message, e.error, undefined).
			return c.json({ success: false, error: message + ' [invalid-params]', stack: undefined, errorType: 'invalid-params' }, 400);
		}
		return c.json({ sessionId: query.sessionId }, 200);
	});
}

async function answer(era, q) {
	const target = '/api/v1/sessions/info?' + q;
	if (era === 'router' || era === 'typed') {
		const res = await router.request(era === 'typed' ? '/typed' + target : target);
		const body = await res.text();
		if (res.status === 200) {
			return { status: 200, sessionId: JSON.parse(body).sessionId };
		}
		return { status: res.status, body };
	}
	// Meteor's webapp: request.query = qs.parse(parseUrl(request.url).query)
	// (packages/webapp/webapp_server.js), qs's defaults; the API throws
	// Meteor.Error('invalid-params', messages), whose message is
	// "reason [error]".
	const query = qsMeteor.parse(parseUrl({ url: target }).query);
	if (!validate(query)) {
		const messages = validate.errors.map((e) => e.message);
		return {
			status: 400,
			body: JSON.stringify({ success: false, error: messages.join('\n ') + ' [invalid-params]', errorType: 'invalid-params' }),
		};
	}
	return { status: 200, sessionId: query.sessionId };
}

async function main() {
	const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
	const out = [];
	for await (const line of rl) {
		const { era, q } = JSON.parse(line);
		out.push(JSON.stringify(await answer(era, q)));
		if (out.length >= 512) {
			process.stdout.write(out.join('\n') + '\n');
			out.length = 0;
		}
	}
	if (out.length) process.stdout.write(out.join('\n') + '\n');
}

main().catch((e) => {
	console.error(e);
	process.exit(1);
});
