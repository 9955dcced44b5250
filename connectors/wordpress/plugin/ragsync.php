<?php
/**
 * Plugin Name: ragsync
 * Description: Tells ragsync when a post or page is published, updated, unpublished, trashed or deleted, so its search index follows the site within a second. Sends signed Standard Webhooks deliveries; ragsync then fetches the post from the REST API itself.
 * Version: 0.3.0
 * Requires at least: 5.7
 * License: Apache-2.0
 *
 * Settings: constants in wp-config.php win over the admin page (Settings → ragsync).
 *   define('RAGSYNC_WEBHOOK_URL', 'https://ragsync.example.com/webhooks/blog');
 *   define('RAGSYNC_WEBHOOK_SECRET', 'whsec_...');     // the same secret ragsync reads from its env var
 *   define('RAGSYNC_POST_TYPES', 'post,page');          // optional
 *   define('RAGSYNC_WEBHOOK_TIMEOUT', 2);               // optional, seconds
 *   define('RAGSYNC_WEBHOOK_BLOCKING', true);           // optional; false: fire and forget, no outbox
 *
 * Visitors' requests never deliver and never wait: the editor's own request delivers its changes
 * once, at shutdown (at most MAX_NEW_PER_REQUEST; one timeout at most, then the rest wait), and a
 * delivery that fails (transport error, timeout, an answer other than 2xx) waits in an outbox
 * (one entry per post, the latest event wins) that WP-Cron or Action Scheduler retries with
 * backoff. The outbox lock is taken try-once and never held across the network. Only posts that
 * were ever public produce events. Settings → ragsync shows the outbox.
 */

if (!defined('ABSPATH')) { exit; }

final class Ragsync_Plugin {
    /** @var array<int, array{type: string, id: int, post_type: string}> one event per post per request */
    private static $events = array();

    const OUTBOX = 'ragsync_outbox';        // post id => {event, attempts, first_at, next_at, error}
    const NEXT = 'ragsync_outbox_next';     // autoloaded: when the outbox is next due (0: empty), so
                                            // an ordinary request pays nothing to find out
    const STATUS = 'ragsync_delivery';      // {last_ok_at, last_error, last_error_at}
    const MAX_ENTRIES = 5000;               // past this the oldest are dropped (ragsync's polling finds them)
    const MAX_AGE = 172800;                 // two days: ragsync's audit and nightly reconcile have them by then
    const MAX_PER_RUN = 25;                 // outbox entries one WP-Cron run delivers
    const MAX_NEW_PER_REQUEST = 10;         // changes one editor's request delivers itself; the rest wait
    const PUBLIC_META = '_ragsync_public';  // set when a post is first published: its deletion matters

    public static function boot() {
        add_action('transition_post_status', array(__CLASS__, 'on_transition'), 10, 3);
        add_action('post_updated', array(__CLASS__, 'on_post_updated'), 10, 3);
        add_action('before_delete_post', array(__CLASS__, 'on_delete'), 10, 1);
        add_action('shutdown', array(__CLASS__, 'send'), 1);
        add_action('ragsync_retry', array(__CLASS__, 'retry'));
        add_action('admin_menu', array(__CLASS__, 'admin_menu'));
        add_action('admin_init', array(__CLASS__, 'register_settings'));
    }

    public static function setting($name, $default = '') {
        $constant = 'RAGSYNC_' . strtoupper($name);
        if (defined($constant)) { return constant($constant); }
        $value = get_option('ragsync_' . $name, '');
        return $value === '' ? $default : $value;
    }

    private static function post_types() {
        $types = self::setting('post_types', 'post,page');
        $types = is_array($types) ? $types : array_map('trim', explode(',', $types));
        return apply_filters('ragsync_post_types', $types);
    }

    private static function tracked($post) {
        if (!$post || wp_is_post_revision($post) || wp_is_post_autosave($post)) { return false; }
        return in_array($post->post_type, self::post_types(), true);
    }

    private static function queue($type, $post) {
        if (!self::tracked($post)) { return; }
        $prev = isset(self::$events[$post->ID]) ? self::$events[$post->ID]['type'] : null;
        if ($prev === 'post.deleted') { return; }          // a delete wins over anything earlier
        self::$events[$post->ID] = array('type' => $type, 'id' => (int) $post->ID, 'post_type' => $post->post_type);
    }

    /** Publish, scheduled post going live (future → publish), unpublish, trash, untrash to publish. */
    public static function on_transition($new_status, $old_status, $post) {
        if ($new_status === 'publish' && $old_status !== 'publish' && self::tracked($post)) {
            update_post_meta($post->ID, self::PUBLIC_META, 1);
        }
        if ($new_status === 'publish') {
            self::queue($old_status === 'publish' ? 'post.updated' : 'post.published', $post);
        } elseif ($old_status === 'publish') {
            self::queue($new_status === 'trash' ? 'post.trashed' : 'post.unpublished', $post);
        }
    }

    /** A password set or removed on a published post (quick edit included) is an update too. */
    public static function on_post_updated($post_id, $after, $before) {
        if ($after->post_status === 'publish' && $after->post_password !== $before->post_password) {
            self::queue('post.updated', $after);
        }
    }

    /** Auto-drafts and drafts that were never published are nothing ragsync ever saw. */
    public static function on_delete($post_id) {
        $post = get_post($post_id);
        if ($post && self::ever_public($post)) { self::queue('post.deleted', $post); }
    }

    private static function ever_public($post) {
        return $post->post_status === 'publish' || get_post_meta($post->ID, self::PUBLIC_META, true)
            || get_post_meta($post->ID, '_wp_trash_meta_status', true) === 'publish';
    }

    /** At shutdown, so terms and meta saved after wp_insert_post() are visible to ragsync's fetch.
     *  Only a request that changed posts (an editor's) has anything to do; it delivers its own
     *  changes once and leaves the rest, and whatever fails, to the outbox. */
    public static function send() {
        $events = array_values(self::$events);
        self::$events = array();
        if (empty($events)) { return; }
        $target = self::target(true);
        if ($target === null) { return; }
        $delivered = array();
        $failed = array();
        $waiting = array_slice($events, self::MAX_NEW_PER_REQUEST);
        foreach (array_slice($events, 0, self::MAX_NEW_PER_REQUEST) as $event) {
            if (!empty($failed)) { $waiting[] = $event; continue; }    // ragsync is unreachable: one timeout is enough
            $error = self::deliver($target, $event);
            if ($error === null) { $delivered[] = $event; } else { $failed[] = array($event, $error); }
        }
        if (empty($failed) && empty($waiting) && (int) get_option(self::NEXT, 0) === 0) { return; }   // nothing to keep
        self::update_outbox(function ($box) use ($delivered, $failed, $waiting) {
            $now = time();
            foreach ($delivered as $event) { unset($box[$event['id']]); }   // delivered now: the latest wins
            foreach ($failed as list($event, $error)) {
                $box[$event['id']] = array('event' => $event, 'attempts' => 1, 'first_at' => $now,
                                           'next_at' => $now + self::backoff(1), 'error' => $error);
            }
            foreach ($waiting as $event) {
                $box[$event['id']] = array('event' => $event, 'attempts' => 0, 'first_at' => $now, 'next_at' => $now,
                                           'error' => 'not sent yet (more changes than one request delivers, or ragsync unreachable)');
            }
            return $box;
        });
    }

    /** WP-Cron / Action Scheduler: take what is due (moving its next try forward before
     *  sending), deliver it with no lock held, then merge the results. Stops at the first
     *  failure: one timeout says ragsync is unreachable. */
    public static function retry() {
        $target = self::target(true);
        if ($target === null) { return; }
        $taken = array();
        self::update_outbox(function ($box) use (&$taken) {
            $now = time();
            foreach ($box as $id => $entry) {
                if ($entry['first_at'] < $now - self::MAX_AGE) {
                    error_log("ragsync: gave up on post $id after {$entry['attempts']} attempts: {$entry['error']}");
                    unset($box[$id]);
                    continue;
                }
                if ($entry['next_at'] > $now || count($taken) >= self::MAX_PER_RUN) { continue; }
                $taken[$id] = $entry['event'];
                $box[$id]['attempts']++;
                $box[$id]['next_at'] = $now + self::backoff($box[$id]['attempts']);
            }
            return $box;
        });
        $results = array();
        foreach ($taken as $id => $event) {
            $results[$id] = self::deliver($target, $event);
            if ($results[$id] !== null) { break; }
        }
        if (empty($results)) { return; }
        self::update_outbox(function ($box) use ($taken, $results) {
            foreach ($results as $id => $error) {
                if (!isset($box[$id]) || $box[$id]['event'] !== $taken[$id]) { continue; }   // a newer event since
                if ($error === null) { unset($box[$id]); } else { $box[$id]['error'] = $error; }
            }
            return $box;
        });
    }

    /** 2, 4, 8 … seconds, at most a minute: a restarted ragsync hears from the site within one. */
    private static function backoff($attempts) {
        return min(60, 2 ** min(6, (int) $attempts));
    }

    /** The URL and signing key, or null, said once in the log when there is something to send. */
    private static function target($log) {
        $url = esc_url_raw((string) self::setting('webhook_url'), array('http', 'https'));
        $secret = trim((string) self::setting('webhook_secret'));
        $problem = null;
        if (!$url) {
            $problem = 'no webhook URL is set (Settings → ragsync or RAGSYNC_WEBHOOK_URL)';
        } elseif ($secret === '') {
            $problem = 'no webhook secret is set (Settings → ragsync or RAGSYNC_WEBHOOK_SECRET)';
        } elseif (strpos($secret, 'whsec_') !== 0 || ($key = base64_decode(substr($secret, 6), true)) === false || $key === '') {
            $problem = 'the webhook secret is not whsec_<base64> (copy it exactly as ragsync\'s variable holds it)';
        }
        if ($problem !== null) {
            if ($log) { error_log("ragsync: nothing sent: $problem"); }
            return null;
        }
        return array('url' => $url, 'key' => $key);
    }

    /** One signed delivery; null when ragsync took it (2xx), else why not. */
    private static function deliver($target, $event) {
        $body = wp_json_encode($event);
        $id = 'msg_' . str_replace('-', '', wp_generate_uuid4());
        $timestamp = time();
        $signature = base64_encode(hash_hmac('sha256', $id . '.' . $timestamp . '.' . $body, $target['key'], true));
        $blocking = (bool) self::setting('webhook_blocking', true);
        // wp_safe_remote_post refuses private hosts and odd ports; ragsync's own host and
        // port (often 127.0.0.1:8787) are allowed, nothing else
        add_filter('http_request_host_is_external', array(__CLASS__, 'is_ragsync_host'), 10, 2);
        add_filter('http_allowed_safe_ports', array(__CLASS__, 'ragsync_port'));
        $response = wp_safe_remote_post($target['url'], array(
            'blocking' => $blocking,
            'timeout'  => (float) self::setting('webhook_timeout', 2),
            'headers'  => array(
                'Content-Type'      => 'application/json',
                'webhook-id'        => $id,
                'webhook-timestamp' => (string) $timestamp,
                'webhook-signature' => 'v1,' . $signature,
            ),
            'body'     => $body,
        ));
        remove_filter('http_request_host_is_external', array(__CLASS__, 'is_ragsync_host'), 10);
        remove_filter('http_allowed_safe_ports', array(__CLASS__, 'ragsync_port'));
        $error = null;
        if (is_wp_error($response)) {
            $error = $response->get_error_message();
        } elseif ($blocking) {
            $code = (int) wp_remote_retrieve_response_code($response);
            if ($code < 200 || $code > 299) { $error = "ragsync answered HTTP $code"; }
        }
        $status = (array) get_option(self::STATUS, array());
        if ($error !== null) {
            error_log("ragsync: delivery of {$event['type']} for post {$event['id']} failed: $error");
            update_option(self::STATUS, array_merge($status, array('last_error' => $error, 'last_error_at' => time())), false);
        } elseif (time() - ($status['last_ok_at'] ?? 0) >= 60) {     // one write a minute at most
            update_option(self::STATUS, array_merge($status, array('last_ok_at' => time())), false);
        }
        return $blocking ? $error : null;   // fire and forget cannot know: nothing to keep
    }

    /** Read-modify-write of the outbox under a MySQL named lock (several PHP workers share it),
     *  taken try-once and held only for this change (never across the network), bypassing the
     *  options cache; then the next due time and a WP-Cron/Action Scheduler wake-up. */
    private static function update_outbox($change) {
        global $wpdb;
        if (!$wpdb->get_var("SELECT GET_LOCK('ragsync_outbox', 0)")) {
            error_log('ragsync: the outbox is busy this instant; this change is left to ragsync\'s polling');
            return;
        }
        try {
            wp_cache_delete(self::OUTBOX, 'options');
            wp_cache_delete('notoptions', 'options');
            $box = $change((array) get_option(self::OUTBOX, array()));
            if (count($box) > self::MAX_ENTRIES) {
                uasort($box, function ($a, $b) { return $a['first_at'] - $b['first_at']; });
                $dropped = count($box) - self::MAX_ENTRIES;
                error_log("ragsync: outbox full, dropped the $dropped oldest deliveries");
                $box = array_slice($box, $dropped, null, true);
            }
            update_option(self::OUTBOX, $box, false);
            $next = empty($box) ? 0 : min(array_column($box, 'next_at'));
            update_option(self::NEXT, $next, true);
        } finally {
            $wpdb->query("SELECT RELEASE_LOCK('ragsync_outbox')");
        }
        if ($next > 0) { self::wake_at($next); }
    }

    private static function wake_at($when) {
        if (function_exists('as_schedule_single_action')) {
            if (!as_next_scheduled_action('ragsync_retry')) { as_schedule_single_action($when, 'ragsync_retry'); }
        } elseif (!wp_next_scheduled('ragsync_retry')) {
            wp_schedule_single_event($when, 'ragsync_retry');
        }
    }

    public static function is_ragsync_host($external, $host) {
        $configured = wp_parse_url((string) self::setting('webhook_url'), PHP_URL_HOST);
        return $external || ($configured && strcasecmp((string) $host, $configured) === 0);
    }

    public static function ragsync_port($ports) {
        $port = wp_parse_url((string) self::setting('webhook_url'), PHP_URL_PORT);
        return $port ? array_merge((array) $ports, array((int) $port)) : $ports;
    }

    public static function admin_menu() {
        add_options_page('ragsync', 'ragsync', 'manage_options', 'ragsync', array(__CLASS__, 'settings_page'));
    }

    public static function register_settings() {
        register_setting('ragsync', 'ragsync_webhook_url', array('type' => 'string', 'sanitize_callback' => 'esc_url_raw'));
        register_setting('ragsync', 'ragsync_post_types', array('type' => 'string', 'sanitize_callback' => 'sanitize_text_field'));
        register_setting('ragsync', 'ragsync_webhook_secret', array('type' => 'string', 'sanitize_callback' => array(__CLASS__, 'keep_secret')));
    }

    /** The form never shows the secret, so an empty field means "unchanged", never "erase";
     *  a value that cannot sign anything is refused (and said) instead of silencing deliveries. */
    public static function keep_secret($value) {
        $value = trim((string) $value);
        $stored = (string) get_option('ragsync_webhook_secret', '');
        if ($value === '') { return $stored; }
        $key = strpos($value, 'whsec_') === 0 ? base64_decode(substr($value, 6), true) : false;
        if ($key === false || $key === '') {
            add_settings_error('ragsync_webhook_secret', 'ragsync_secret',
                'ragsync: the secret must be whsec_<base64>, exactly as ragsync\'s variable holds it; the previous secret is kept.');
            error_log('ragsync: refused a webhook secret that is not whsec_<base64>; the previous one is kept');
            return $stored;
        }
        return $value;
    }

    public static function settings_page() {
        echo '<div class="wrap"><h1>ragsync</h1><form method="post" action="options.php">';
        settings_fields('ragsync');
        echo '<table class="form-table">';
        foreach (array('webhook_url' => 'Webhook URL', 'webhook_secret' => 'Secret (whsec_…)', 'post_types' => 'Post types') as $name => $label) {
            $locked = defined('RAGSYNC_' . strtoupper($name));
            $value = $name === 'webhook_secret' ? '' : esc_attr(get_option('ragsync_' . $name, ''));
            printf('<tr><th><label for="ragsync_%1$s">%2$s</label></th><td><input class="regular-text" type="%3$s" id="ragsync_%1$s" name="ragsync_%1$s" value="%4$s" %5$s>%6$s</td></tr>',
                esc_attr($name), esc_html($label), $name === 'webhook_secret' ? 'password' : 'text', $value,
                $locked ? 'disabled' : '', $locked ? ' <em>set in wp-config.php</em>' : '');
        }
        echo '</table>';
        submit_button();
        echo '</form>';
        $box = (array) get_option(self::OUTBOX, array());
        $status = (array) get_option(self::STATUS, array());
        $when = function ($t) { return $t ? esc_html(human_time_diff((int) $t) . ' ago') : 'never'; };
        echo '<h2>Delivery</h2><table class="form-table">';
        printf('<tr><th>Waiting to be retried</th><td id="ragsync-outbox">%d</td></tr>', count($box));
        if ($box) {
            printf('<tr><th>Oldest waiting since</th><td>%s</td></tr>', $when(min(array_column($box, 'first_at'))));
        }
        printf('<tr><th>Last delivered</th><td>%s</td></tr>', $when($status['last_ok_at'] ?? 0));
        printf('<tr><th>Last error</th><td id="ragsync-last-error">%s</td></tr>', isset($status['last_error'])
            ? esc_html($status['last_error']) . ' (' . $when($status['last_error_at']) . ')' : 'none');
        echo '</table></div>';
    }
}

Ragsync_Plugin::boot();
