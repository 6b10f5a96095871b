import { spawnSync } from 'node:child_process';

/** How to get Java, printed whenever it is missing or too old. */
export const JAVA_HELP =
  'The embedded DynamoDB (DynamoDB Local 3.3.1) needs Java 17 or newer. Install it with ' +
  '`sudo apt-get install -y openjdk-17-jre-headless` (Debian/Ubuntu), `brew install openjdk@17` (macOS), ' +
  'or any JDK 17+, then make sure `java` is on PATH or set JAVA_HOME. Alternatively point payfleet at ' +
  'LocalStack or AWS with AWS_ENDPOINT_URL (see README).';

export class JavaMissingError extends Error {
  constructor(reason: string) {
    super(`${reason}. ${JAVA_HELP}`);
    this.name = 'JavaMissingError';
  }
}

/** Resolve the java binary: $JAVA_HOME/bin/java when set, else `java` on PATH. */
export function javaBinary(env: NodeJS.ProcessEnv = process.env): string {
  return env.JAVA_HOME ? `${env.JAVA_HOME}/bin/java` : 'java';
}

/** Parse the major version from `java -version` output ("17.0.15", "1.8.0_392" -> 8). */
export function parseJavaMajor(versionOutput: string): number | undefined {
  const m = /version "(\d+)(?:\.(\d+))?/.exec(versionOutput);
  if (!m) return undefined;
  const first = Number(m[1]);
  return first === 1 ? Number(m[2]) : first;
}

/** Throw {@link JavaMissingError} unless Java 17+ runs. Returns the binary path. */
export function requireJava17(env: NodeJS.ProcessEnv = process.env): string {
  const bin = javaBinary(env);
  const r = spawnSync(bin, ['-version'], { encoding: 'utf8' });
  if (r.error) throw new JavaMissingError(`Java was not found (${bin})`);
  const major = parseJavaMajor(`${r.stderr}${r.stdout}`);
  if (major === undefined) throw new JavaMissingError(`could not read the version of ${bin}`);
  if (major < 17) throw new JavaMissingError(`Java ${major} was found at ${bin}, but 17 or newer is needed`);
  return bin;
}
