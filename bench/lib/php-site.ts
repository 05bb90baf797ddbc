/**
 * @module bench/lib/php-site
 * The PHP site the gateway benches serve: the fixture app under one
 * `php-cgi -b SOCK` with 4 workers, and nginx (1 worker) in front of it
 * with the usual PHP server block (try_files … /index.php, split PATH_INFO).
 */
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { fixture, startNginx, startPhpCgi, tmpDir, type Nginx, type Peer } from '../../test/helpers/peers.js';

export interface PhpSite {
  root: string;
  /** php-cgi's socket. */
  sock: string;
  php: Peer;
  nginx: Nginx;
  stop(): Promise<void>;
}

export async function startPhpSite(): Promise<PhpSite> {
  const root = fixture('php-app');
  const dir = tmpDir('gh-bench-php-');
  const sock = join(dir, 'php.sock');
  const php = await startPhpCgi({ path: sock }, { children: 4 });
  // nginx's workers drop root privileges (to nobody): let them reach the socket.
  chmodSync(dir, 0o755);
  chmodSync(sock, 0o666);
  const nginx = await startNginx(
    `root ${root};
    location / { try_files $uri $uri/ /index.php?$query_string; }
    location ~ [^/]\\.php(/|$) {
      fastcgi_split_path_info ^(.+?\\.php)(/.*)$;
      try_files $fastcgi_script_name =404;
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
      fastcgi_param PATH_INFO $fastcgi_path_info;
      fastcgi_pass unix:${sock};
    }`,
    { workers: 1 },
  );
  return {
    root,
    sock,
    php,
    nginx,
    async stop() {
      await nginx.stop();
      await php.stop();
    },
  };
}
