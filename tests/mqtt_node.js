// MQTT.js in Node.js (as Node-RED and other gateway tools use it) against
// the hub over TCP, for tests/tests/mqtt_js.rs:
//
//   node mqtt_node.js TCP_PORT
//
// A persistent MQTT 5 subscriber (QoS 2, Topic Alias Maximum 10) leaves; a
// publisher that assigns its own topic aliases sends QoS 2 messages; the
// subscriber comes back to its session and gets them all, then live QoS 1
// ones, which the hub names by alias. Prints one JSON line with what
// happened; exits non-zero on an error or a timeout.
const path = require("path");
const mqtt = require(path.join(__dirname, "js", "node_modules", "mqtt"));

const url = `mqtt://127.0.0.1:${process.argv[2]}`;
const AWAY = 50;
const LIVE = 20;
const result = { errors: [] };

const deadline = setTimeout(() => {
  result.errors.push("timed out");
  finish();
}, 30000);

function finish() {
  clearTimeout(deadline);
  console.log(JSON.stringify(result));
  process.exit(result.errors.length ? 1 : 0);
}

// Resolves once `client` emitted `event`, or fails the run on an error.
function once(client, event) {
  return new Promise((resolve) => {
    client.once(event, resolve);
    client.once("error", (e) => {
      result.errors.push(`${event}: ${e.message}`);
      finish();
    });
  });
}

function subscriber() {
  return mqtt.connect(url, {
    protocolVersion: 5,
    clientId: "node-red-1",
    clean: false,
    reconnectPeriod: 0,
    properties: { sessionExpiryInterval: 300, topicAliasMaximum: 10 },
  });
}

async function main() {
  let sub = subscriber();
  const first = await once(sub, "connect");
  result.first_session_present = first.sessionPresent;
  const granted = await sub.subscribeAsync("node/#", { qos: 2 });
  result.granted = granted.map((g) => g.qos);
  await sub.endAsync();

  const pub = mqtt.connect(url, {
    protocolVersion: 5,
    clientId: "node-pub",
    reconnectPeriod: 0,
    autoAssignTopicAlias: true,
  });
  await once(pub, "connect");
  result.connack_topic_alias_max = pub.topicAliasSend ? pub.topicAliasSend.max : null;
  for (let i = 0; i < AWAY; i++) {
    await pub.publishAsync("node/away", `a${i}`, { qos: 2 });
  }

  sub = subscriber();
  const received = [];
  sub.on("message", (topic, payload, packet) => {
    // `named`: the PUBLISH carried the topic itself, not only an alias.
    const alias = packet.properties?.topicAlias ?? null;
    received.push({ topic, payload: payload.toString(), qos: packet.qos, alias, named: packet.topic.length > 0 });
  });
  const second = await once(sub, "connect");
  result.second_session_present = second.sessionPresent;
  const waitFor = async (n) => {
    for (let t = 0; t < 200 && received.length < n; t++) await new Promise((r) => setTimeout(r, 50));
  };
  await waitFor(AWAY);
  for (let i = 0; i < LIVE; i++) {
    await pub.publishAsync("node/live", `l${i}`, { qos: 1 });
  }
  await waitFor(AWAY + LIVE);
  // A moment for anything sent twice to show.
  await new Promise((r) => setTimeout(r, 300));
  result.received = received;
  await sub.endAsync();
  await pub.endAsync();
  finish();
}

main().catch((e) => {
  result.errors.push(e.message);
  finish();
});
