// The official OpenAI Node client, unchanged, against `lmpress serve`
// (scripts/test-serve-clients.sh starts the server and sets the environment).
// Exits 1 naming the first check that fails.
import OpenAI from "openai";

const baseURL = process.env.LMPRESS_BASE_URL;  // http://127.0.0.1:PORT/v1
const apiKey = process.env.LMPRESS_API_KEY;
const expected = process.env.LMPRESS_EXPECTED;  // lmpress generate's greedy text for the completion below

function check(ok, what) {
  if (!ok) {
    console.error(`openai client: FAILED: ${what}`);
    process.exit(1);
  }
  console.log(`openai client: ok: ${what}`);
}

const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const models = await client.models.list();
const model = models.data[0].id;
check(models.data.length === 1 && typeof model === "string", `models.list() names the model (${model})`);

const c = await client.completions.create({
  model, prompt: "Once upon a time", max_tokens: 24, temperature: 0, ignore_eos: true,
});
check(c.choices[0].text === expected, "completions.create greedy text equals lmpress generate's");
check(c.usage.completion_tokens === 24, "usage.completion_tokens is 24");

const messages = [
  { role: "system", content: "You are brief." },
  { role: "user", content: "Tell me a story about a dog." },
];
const whole = await client.chat.completions.create({ model, messages, max_tokens: 20, temperature: 0 });
check(whole.object === "chat.completion" && whole.choices[0].message.role === "assistant",
      "chat.completions.create answers as the assistant");
check(whole.choices[0].message.content.length > 0, "the reply has content");
check(whole.usage.prompt_tokens > 0 && whole.usage.total_tokens === whole.usage.prompt_tokens + whole.usage.completion_tokens,
      "chat usage adds up");

const stream = await client.chat.completions.create({
  model, messages, max_tokens: 20, temperature: 0, stream: true, stream_options: { include_usage: true },
});
let text = "", finish = null, usage = null;
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  for (const ch of chunk.choices) {
    text += ch.delta?.content ?? "";
    if (ch.finish_reason) finish = ch.finish_reason;
  }
}
check(text === whole.choices[0].message.content, "the streamed chat text equals the non-streamed one");
check(finish === whole.choices[0].finish_reason, `the stream ends with finish_reason ${finish}`);
check(usage && usage.completion_tokens === whole.usage.completion_tokens, "the stream's usage chunk counts the tokens");

let refused = null;
try {
  await new OpenAI({ baseURL, apiKey: "wrong", maxRetries: 0 }).models.list();
} catch (e) {
  refused = e;
}
check(refused instanceof OpenAI.AuthenticationError, "a wrong key is an AuthenticationError (401)");

let bad = null;
try {
  await client.chat.completions.create({ model, messages: [], max_tokens: 4 });
} catch (e) {
  bad = e;
}
check(bad instanceof OpenAI.BadRequestError && /messages/.test(bad.message), "empty messages are a BadRequestError (400)");
