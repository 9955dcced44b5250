<?php
/**
 * Plugin Name: ragsync
 * Description: Tells ragsync when a post or page is published, updated, unpublished, trashed or deleted, so its search index follows the site within a second. Sends signed Standard Webhooks deliveries; ragsync then fetches the post from the REST API itself.
 * Version: 0.1.0
 * Requires at least: 5.7
 * License: Apache-2.0
 *
 * Settings: constants in wp-config.php win over the admin page (Settings → ragsync).
 *   define('RAGSYNC_WEBHOOK_URL', 'https://ragsync.example.com/webhooks/blog');
 *   define('RAGSYNC_WEBHOOK_SECRET', 'whsec_...');     // the same secret ragsync reads from its env var
 *   define('RAGSYNC_POST_TYPES', 'post,page');          // optional
 *   define('RAGSYNC_WEBHOOK_TIMEOUT', 2);               // optional, seconds
 *   define('RAGSYNC_WEBHOOK_BLOCKING', false);          // optional; true waits for ragsync's 202
 */

if (!defined('ABSPATH')) { exit; }

final class Ragsync_Plugin {
    /** @var array<int, array{type: string, id: int, post_type: string}> one event per post per request */
    private static $events = array();

    public static function boot() {
        add_action('transition_post_status', array(__CLASS__, 'on_transition'), 10, 3);
        add_action('post_updated', array(__CLASS__, 'on_post_updated'), 10, 3);
        add_action('before_delete_post', array(__CLASS__, 'on_delete'), 10, 1);
        add_action('shutdown', array(__CLASS__, 'send'), 1);
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

    public static function on_delete($post_id) {
        $post = get_post($post_id);
        if ($post) { self::queue('post.deleted', $post); }
    }

    /** At shutdown, so terms and meta saved after wp_insert_post() are visible to ragsync's fetch. */
    public static function send() {
        $url = esc_url_raw((string) self::setting('webhook_url'), array('http', 'https'));
        $secret = self::setting('webhook_secret');
        if (empty(self::$events) || !$url || strpos($secret, 'whsec_') !== 0) { return; }
        $key = base64_decode(substr($secret, 6), true);
        if ($key === false) { error_log('ragsync: webhook secret is not whsec_<base64>'); return; }
        foreach (self::$events as $event) {
            $body = wp_json_encode($event);
            $id = 'msg_' . str_replace('-', '', wp_generate_uuid4());
            $timestamp = time();
            $signature = base64_encode(hash_hmac('sha256', $id . '.' . $timestamp . '.' . $body, $key, true));
            // wp_safe_remote_post refuses private hosts and odd ports; ragsync's own host and
            // port (often 127.0.0.1:8787) are allowed, nothing else
            add_filter('http_request_host_is_external', array(__CLASS__, 'is_ragsync_host'), 10, 2);
            add_filter('http_allowed_safe_ports', array(__CLASS__, 'ragsync_port'));
            $response = wp_safe_remote_post($url, array(
                'blocking' => (bool) self::setting('webhook_blocking', false),
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
            if (is_wp_error($response)) {
                error_log('ragsync: delivery failed: ' . $response->get_error_message());
            }
        }
        self::$events = array();
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

    /** The form never shows the secret, so an empty field means "unchanged", never "erase". */
    public static function keep_secret($value) {
        $value = trim((string) $value);
        return $value === '' ? (string) get_option('ragsync_webhook_secret', '') : $value;
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
        echo '</form></div>';
    }
}

Ragsync_Plugin::boot();
